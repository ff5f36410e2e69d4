//! An admin names a device and keeps notes on it. Both stay apart from what the device reports
//! of itself: the admin's name is shown instead of the reported one, and no reconnection
//! changes either.

use serde::Serialize;
use serde_json::json;

use super::{AdminCommand, CommandTx, validate};
use crate::error::EngineError;
use crate::events::{DeviceChange, OrgEvent};
use crate::ids::DeviceId;
use crate::model::Device;
use crate::store::{DeviceEdit, FieldEdit};

/// Longest admin-set device name.
pub const MAX_DEVICE_NAME_BYTES: usize = 128;
/// Longest notes on a device.
pub const MAX_DEVICE_NOTES_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditDevice {
    pub device_id: DeviceId,
    /// The name to show (set), or back to the reported one (cleared).
    pub name: FieldEdit<String>,
    pub notes: FieldEdit<String>,
}

impl AdminCommand for EditDevice {
    /// The device as edited.
    type Reply = Device;
    const NAME: &'static str = "edit_device";

    async fn execute(&self, tx: &mut CommandTx<'_>) -> Result<Device, EngineError> {
        let name = match &self.name {
            FieldEdit::Set(name) => {
                FieldEdit::Set(validate::name("name", name, MAX_DEVICE_NAME_BYTES)?)
            }
            other => other.clone(),
        };
        let notes = match &self.notes {
            FieldEdit::Set(notes) if notes.trim().is_empty() => FieldEdit::Cleared,
            FieldEdit::Set(notes) => {
                FieldEdit::Set(validate::notes(notes, MAX_DEVICE_NOTES_BYTES)?)
            }
            other => other.clone(),
        };
        if name == FieldEdit::Unchanged && notes == FieldEdit::Unchanged {
            return Err(EngineError::invalid("name", "give a name, notes, or both"));
        }
        let edit = DeviceEdit { name, notes };
        if !tx
            .store
            .edit_device(tx.org_id, self.device_id, &edit)
            .await?
        {
            return Err(EngineError::NotFound("device"));
        }
        let device = tx
            .store
            .device(tx.org_id, self.device_id)
            .await?
            .ok_or(EngineError::NotFound("device"))?;
        // Named by the device, so that its history (the log's device filter) shows the edit.
        tx.audit_naming(
            "device.edited",
            self.device_id.to_string(),
            json!({
                "name": device.name,
                "name_changed": edit.name != FieldEdit::Unchanged,
                "notes_changed": edit.notes != FieldEdit::Unchanged,
            }),
            vec![self.device_id],
        )
        .await?;
        Ok(device)
    }

    fn events(&self, _: &Device) -> Vec<OrgEvent> {
        vec![OrgEvent::Devices {
            change: DeviceChange::Edited,
            device_ids: vec![self.device_id],
        }]
    }
}
