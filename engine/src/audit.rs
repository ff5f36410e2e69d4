//! What the audit log says, where more than one part of the engine says it: the fields an entry
//! about a device carries, and the rules of a filter on the log.
//!
//! An entry carries the names of what it concerns as they were when it was written, besides
//! their ids, so that the log stays readable after a rename, an unpairing or a deletion. In an
//! entry's `details`, `name` is the name of its subject; the names of other things it concerns
//! are `<thing>_name` (`device_name`, `configuration_name`), and a code's is its `label`
//! (`code_label` when the code is not the subject).

use serde_json::{Map, Value};

use crate::error::EngineError;
use crate::model::AuditFilter;
use crate::store::{ActiveDevice, DeviceDetails};

/// The most actions one filter may name.
pub(crate) const MAX_FILTER_ACTIONS: usize = 20;

/// The longest action name a filter may give (the longest real one is far shorter).
const MAX_ACTION_BYTES: usize = 64;

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

/// `filter` checked and put in its plain form: actions sorted, each once.
pub(crate) fn checked_filter(filter: &AuditFilter) -> Result<AuditFilter, EngineError> {
    let mut actions = filter.actions.clone();
    actions.sort();
    actions.dedup();
    if actions.len() > MAX_FILTER_ACTIONS {
        return Err(EngineError::invalid(
            "action",
            format!("at most {MAX_FILTER_ACTIONS} actions"),
        ));
    }
    let well_formed = |action: &String| {
        !action.is_empty()
            && action.len() <= MAX_ACTION_BYTES
            && action.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._".contains(&byte)
            })
    };
    if !actions.iter().all(well_formed) {
        return Err(EngineError::invalid(
            "action",
            "action names such as device.paired, separated by commas",
        ));
    }
    if let (Some(from), Some(until)) = (filter.from, filter.until)
        && until <= from
    {
        return Err(EngineError::invalid("until", "a time after from"));
    }
    Ok(AuditFilter {
        actions,
        ..filter.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Timestamp;

    fn filter(actions: &[&str]) -> AuditFilter {
        AuditFilter {
            actions: actions.iter().map(|action| action.to_string()).collect(),
            ..AuditFilter::default()
        }
    }

    #[test]
    fn a_filter_names_each_action_once_in_order() {
        let checked = checked_filter(&filter(&[
            "device.unpaired",
            "device.paired",
            "device.paired",
        ]));
        assert_eq!(
            checked.map(|filter| filter.actions),
            Ok(vec![
                "device.paired".to_string(),
                "device.unpaired".to_string()
            ])
        );
    }

    #[test]
    fn a_filter_refuses_what_no_action_is_called() {
        for bad in [
            "",
            "Device.Paired",
            "device paired",
            "device;paired",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(
                    checked_filter(&filter(&[bad])),
                    Err(EngineError::Invalid {
                        field: "action",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_FILTER_ACTIONS)
            .map(|i| format!("a.{}", "b".repeat(i)))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(checked_filter(&filter(&many)).is_err());
    }

    #[test]
    fn a_time_window_must_not_be_empty() {
        let window = |from: i64, until: i64| AuditFilter {
            from: Some(Timestamp(from)),
            until: Some(Timestamp(until)),
            ..AuditFilter::default()
        };
        assert!(checked_filter(&window(1, 2)).is_ok());
        assert!(matches!(
            checked_filter(&window(2, 2)),
            Err(EngineError::Invalid { field: "until", .. })
        ));
    }

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
