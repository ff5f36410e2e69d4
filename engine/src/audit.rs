//! What the audit log says, where more than one part of the engine says it: the fields an entry
//! about a device carries.
//!
//! An entry carries the names of what it concerns as they were when it was written, besides
//! their ids, so that the log stays readable after a rename, an unpairing or a deletion. In an
//! entry's `details`, `name` is the name of its subject; the names of other things it concerns
//! are `<thing>_name` (`device_name`, `configuration_name`), and a code's is its `label`
//! (`code_label` when the code is not the subject).

use serde_json::{Map, Value};

use crate::store::{ActiveDevice, DeviceDetails};

/// `details` with what the device said of itself added: `name`, `model`, `os`, `app_version`
/// (for entries whose subject is the device).
pub(crate) fn with_device(details: Value, device: &DeviceDetails) -> Value {
    let mut fields = match details {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    fields.insert("name".into(), device.name.clone().into());
    fields.insert("model".into(), device.model.clone().into());
    fields.insert("os".into(), device.os.clone().into());
    fields.insert("app_version".into(), device.app_version.clone().into());
    Value::Object(fields)
}

/// The details of an entry that ends a device's pairing (`device.unpaired`,
/// `device.license_expired`): the license it held, its installation, and what it last said of
/// itself, so that the device's history stays readable once it is gone from the device list.
pub(crate) fn ended_device(device: &ActiveDevice) -> Value {
    let details = serde_json::json!({
        "license_id": device.license_id,
        "installation_id": device.installation_id,
    });
    with_device(details, &device.details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_fields_join_the_entry_s_own() {
        let device = DeviceDetails {
            name: "Van 7".into(),
            model: "TC52".into(),
            os: "Android 13".into(),
            app_version: "4.2.1".into(),
        };
        let details = with_device(serde_json::json!({ "license_id": "l" }), &device);
        assert_eq!(
            details,
            serde_json::json!({
                "license_id": "l",
                "name": "Van 7",
                "model": "TC52",
                "os": "Android 13",
                "app_version": "4.2.1",
            })
        );
    }
}
