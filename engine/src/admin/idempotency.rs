//! Idempotency keys: a command sent again with the same key gets the first reply back and
//! changes nothing.
//!
//! The reply is stored under (scope, key) in the command's own transaction, sealed with the
//! server key because some replies carry a secret (a new code, a new key). A fingerprint of the
//! command tells a retry from a different command sent under the same key.

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::EngineError;
use crate::ids::OrgId;
use crate::node::Node;
use crate::store::StoredReply;

/// A client-chosen key that makes a creating command safe to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 200 || !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err(EngineError::invalid(
                "Idempotency-Key",
                "1 to 200 printable ASCII characters",
            ));
        }
        Ok(IdempotencyKey(text.to_string()))
    }
}

/// SHA-256 of a value's JSON form.
pub(crate) fn fingerprint_of<T: Serialize + ?Sized>(value: &T) -> [u8; 32] {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

/// A command as `{"<name>": {<its fields>}}`: the form fingerprints have always hashed (the
/// commands used to be one externally tagged enum), so that a retry that spans an upgrade is
/// still recognised as the same command.
pub(crate) struct Named<'a, T: ?Sized> {
    pub name: &'static str,
    pub command: &'a T,
}

impl<T: Serialize + ?Sized> Serialize for Named<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.name, self.command)?;
        map.end()
    }
}

fn context(scope: &str, key: &IdempotencyKey) -> Vec<u8> {
    format!("{scope}\0{}", key.0).into_bytes()
}

/// The reply as stored: its JSON, sealed with the server key and bound to (scope, key).
pub(crate) fn seal<T: Serialize>(
    node: &Node,
    scope: &str,
    key: &IdempotencyKey,
    fingerprint: [u8; 32],
    reply: &T,
) -> Result<StoredReply, EngineError> {
    let bytes = serde_json::to_vec(reply).map_err(|error| {
        tracing::error!(%error, "cannot serialize an idempotent reply");
        EngineError::Internal
    })?;
    Ok(StoredReply {
        fingerprint,
        sealed_reply: node.cipher.seal(&context(scope, key), &bytes),
    })
}

/// The stored reply of an earlier run with the same key, if it was the same command.
pub(crate) fn replay<T: DeserializeOwned>(
    node: &Node,
    org_id: OrgId,
    scope: &str,
    key: &IdempotencyKey,
    stored: &StoredReply,
    fingerprint: &[u8; 32],
) -> Result<T, EngineError> {
    if &stored.fingerprint != fingerprint {
        return Err(EngineError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request",
        ));
    }
    let bytes = node
        .cipher
        .open(&context(scope, key), &stored.sealed_reply)
        .map_err(|_| {
            tracing::error!("a stored idempotent reply does not open with the server key");
            EngineError::Internal
        })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|error| {
        tracing::error!(%error, "a stored idempotent reply does not parse");
        EngineError::Internal
    })?;
    serde_json::from_value(value.clone())
        .or_else(|_| serde_json::from_value(from_enum_form(value, org_id)))
        .map_err(|error| {
            tracing::error!(%error, "a stored idempotent reply does not parse");
            EngineError::Internal
        })
}

/// A reply stored before commands were types of their own, as the variant of the enum that all
/// replies then were (`{"code": {...}}`), in today's form. Records live a day at most, but
/// during a rolling upgrade a node of the earlier version may still write them.
fn from_enum_form(value: serde_json::Value, org_id: OrgId) -> serde_json::Value {
    let serde_json::Value::Object(map) = value else {
        return value;
    };
    let mut entries = map.into_iter();
    let (Some((variant, inner)), None) = (entries.next(), entries.next()) else {
        return serde_json::Value::Null;
    };
    match (variant.as_str(), inner) {
        ("key", serde_json::Value::Object(mut fields)) => {
            let secret = fields.remove("secret").unwrap_or_default();
            let mut reply = match fields.remove("info") {
                Some(serde_json::Value::Object(info)) => info,
                _ => serde_json::Map::new(),
            };
            reply.insert("key".into(), secret);
            serde_json::Value::Object(reply)
        }
        ("licenses", serde_json::Value::Object(mut fields)) => serde_json::json!({
            "organization_id": org_id,
            "license_ids": fields.remove("ids").unwrap_or_default(),
            "valid_until": fields.remove("valid_until").unwrap_or_default(),
        }),
        (_, inner) => inner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CodeId, KeyId, LicenseId, Timestamp};
    use crate::model::{CodeInfo, CodeKind, CodeStatus, CodeWithSecret, OrgKeyInfo};

    #[test]
    fn a_named_command_is_hashed_as_the_enum_variant_it_used_to_be() {
        #[derive(Serialize)]
        struct CreateKey {
            name: String,
        }
        let named = Named {
            name: "create_key",
            command: &CreateKey { name: "x".into() },
        };
        assert_eq!(
            serde_json::to_string(&named).unwrap_or_default(),
            r#"{"create_key":{"name":"x"}}"#
        );
    }

    #[test]
    fn replies_stored_in_the_enum_form_read_as_todays_replies() {
        let org_id = OrgId::generate();
        let key_id = KeyId::generate();
        let stored = serde_json::json!({ "key": {
            "info": { "id": key_id, "organization_id": org_id, "name": "portal",
                      "created_at": Timestamp(5), "revoked_at": null },
            "secret": "paird_key_abc",
        }});
        let reply: crate::admin::CreatedKey =
            serde_json::from_value(from_enum_form(stored, org_id)).expect("a key reply");
        assert_eq!(reply.key, "paird_key_abc");
        assert_eq!(
            reply.info,
            OrgKeyInfo {
                id: key_id,
                organization_id: org_id,
                name: "portal".into(),
                created_at: Timestamp(5),
                revoked_at: None,
                last_used_at: None,
                expires_at: None,
            }
        );

        let license = LicenseId::generate();
        let stored = serde_json::json!({ "licenses": { "ids": [license], "valid_until": null } });
        let reply: crate::admin::AddedLicenses =
            serde_json::from_value(from_enum_form(stored, org_id)).expect("a licenses reply");
        assert_eq!(reply.license_ids, vec![license]);
        assert_eq!(reply.organization_id, org_id);

        let code = CodeWithSecret {
            info: CodeInfo {
                id: CodeId::generate(),
                organization_id: org_id,
                kind: CodeKind::Reusable,
                label: None,
                status: CodeStatus::Active,
                created_at: Timestamp(1),
                expires_at: Timestamp(2),
                max_uses: None,
                uses: 0,
                last_used_at: None,
                revoked_at: None,
                license_id: None,
                configuration_id: None,
                replaces_device_id: None,
            },
            code: "ABC".into(),
        };
        let stored = serde_json::json!({ "code": code });
        let reply: CodeWithSecret =
            serde_json::from_value(from_enum_form(stored, org_id)).expect("a code reply");
        assert_eq!(reply, code);
        // A code reply stored before codes could replace a device lacks that field.
        let mut older = serde_json::to_value(&code).expect("json");
        older
            .as_object_mut()
            .expect("an object")
            .remove("replaces_device_id");
        let stored = serde_json::json!({ "code": older });
        let reply: CodeWithSecret =
            serde_json::from_value(from_enum_form(stored, org_id)).expect("an older code reply");
        assert_eq!(reply, code);
    }
}
