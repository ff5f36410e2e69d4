//! Webhooks: the events an organization's portal backend can receive over HTTP, what a
//! delivery carries and how it is signed, and when a failed one is tried again.
//!
//! An event is written to the outbox (`StoreTx::enqueue_webhook_event`) in the transaction of
//! the change it tells, from the audit entries that transaction writes ([`enqueue`]): a
//! committed change always has its deliveries, a rolled-back one never does, and a restart loses
//! none. The server's delivery task sends them (the engine opens no sockets): it leases the due
//! deliveries through [`crate::Engine::lease_webhook_deliveries`], posts each one signed with
//! [`signature`], and reports through [`crate::Engine::finish_webhook_delivery`], which applies
//! [`retry_after`].

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ids::{OrgId, Timestamp};
use crate::store::{NewAudit, StoreResult, StoreTx, WebhookEvent};

/// The kinds of events a webhook may receive, each with the audit actions it tells.
pub const EVENT_KINDS: [(&str, &[&str]); 6] = [
    ("pairings", &["device.paired"]),
    (
        "unpairings",
        &[
            "device.unpaired",
            "devices.unpaired",
            "device.license_expired",
            "device.replaced",
            "device.released_inactive",
        ],
    ),
    ("no_free_license", &["pairing.refused"]),
    ("rollout_halted", &["configuration.rollout_halted"]),
    ("apply_failed", &["configuration.apply_failed"]),
    // Told by the expiry duty, not by an audit entry (`NoticeExpiringLicenses`).
    ("licenses_expiring", &[]),
];

/// `licenses_expiring` tells of licenses that end within a webhook's `expiring_within_days`
/// (7 unless it says), at most once per webhook per this period.
pub const EXPIRING_WITHIN_DAYS_DEFAULT: u32 = 7;
pub const EXPIRING_NOTICE_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often the expiry duty looks for organizations to tell.
pub const EXPIRING_CHECK_INTERVAL: Duration = Duration::from_secs(600);

/// At most one `no_free_license` event per webhook within this period.
pub const NO_FREE_LICENSE_INTERVAL: Duration = Duration::from_secs(600);

/// The first retry comes this long after a failed attempt; each next one twice as long, up to
/// [`RETRY_MAX_DELAY`].
pub const RETRY_FIRST_DELAY: Duration = Duration::from_secs(10);
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(3600);
/// A delivery still failing this long after its event is given up (`failed`; it may be
/// replayed).
pub const RETRY_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Most webhooks per organization.
pub const MAX_WEBHOOKS_PER_ORG: u64 = 10;

/// Whether `kind` names a kind of event.
pub fn is_kind(kind: &str) -> bool {
    EVENT_KINDS.iter().any(|(known, _)| *known == kind)
}

/// The kind of event an audit entry tells, if any.
fn kind_of(entry: &NewAudit) -> Option<&'static str> {
    if entry.action == "pairing.refused" {
        // Only the refusals for want of a license.
        return (entry.details["reason"] == "no_free_license").then_some("no_free_license");
    }
    EVENT_KINDS
        .iter()
        .find(|(_, actions)| actions.contains(&entry.action.as_str()))
        .map(|(kind, _)| *kind)
}

/// Puts the events that `entries` (the audit entries of one transaction of `org_id`) tell into
/// the outbox, one event per kind, in the same transaction.
pub(crate) async fn enqueue(
    tx: &mut (impl StoreTx + ?Sized),
    org_id: OrgId,
    entries: &[NewAudit],
) -> StoreResult<()> {
    for (kind, _) in EVENT_KINDS {
        let told: Vec<&NewAudit> = entries
            .iter()
            .filter(|entry| kind_of(entry) == Some(kind))
            .collect();
        let Some(first) = told.first() else {
            continue;
        };
        let event_id = uuid::Uuid::now_v7();
        let payload = json!({
            "id": event_id,
            "kind": kind,
            "organization_id": org_id,
            "at": first.at,
            "entries": told.iter().map(|entry| json!({
                "at": entry.at,
                "actor": entry.actor,
                "action": entry.action,
                "subject": entry.subject,
                "details": entry.details,
            })).collect::<Vec<_>>(),
        });
        let throttle = if kind == "no_free_license" {
            NO_FREE_LICENSE_INTERVAL.as_millis() as i64
        } else {
            0
        };
        tx.enqueue_webhook_event(&WebhookEvent {
            org_id,
            event_id,
            kind,
            payload: payload.to_string(),
            at: first.at,
            throttle,
        })
        .await?;
    }
    Ok(())
}

/// When a delivery that failed its `attempts`-th attempt at `now` is tried again; `None` once
/// its event is older than [`RETRY_PERIOD`] (it is given up).
pub fn retry_after(attempts: u32, created_at: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let doubling = attempts.saturating_sub(1).min(20);
    let delay = RETRY_FIRST_DELAY
        .saturating_mul(1 << doubling)
        .min(RETRY_MAX_DELAY);
    let next = now.plus(delay);
    (next.0 - created_at.0 <= RETRY_PERIOD.as_millis() as i64).then_some(next)
}

/// The `Paird-Signature` header of a delivery of `body` at `timestamp` (Unix seconds), signed
/// with the webhook's `secret`: `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let mac = hmac_sha256(secret.as_bytes(), &signed);
    let hex: String = mac.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// HMAC-SHA256 (RFC 2104) over `sha2`'s SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Whether `url` may receive webhooks: `https://`, or `http://` to this machine only (a
/// receiver beside the server, as in tests); at most 2,048 bytes, no spaces or control
/// characters.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("at most 2048 characters without spaces");
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("an https:// URL (or http:// to a loopback address)");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err("a URL with a host and no user information");
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    if https {
        return Ok(());
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err("http:// only to a loopback address; use https://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let hex =
            |bytes: [u8; 32]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            signature("Jefe", 7, b"x"),
            format!("t=7,v1={}", hex(hmac_sha256(b"Jefe", b"7.x")))
        );
    }

    #[test]
    fn retries_double_up_to_an_hour_and_stop_after_a_day() {
        let created = Timestamp(0);
        let after =
            |attempts, now: i64| retry_after(attempts, created, Timestamp(now)).map(|t| t.0 - now);
        assert_eq!(after(1, 0), Some(10_000));
        assert_eq!(after(2, 0), Some(20_000));
        assert_eq!(after(3, 0), Some(40_000));
        assert_eq!(after(30, 0), Some(3_600_000));
        assert_eq!(after(5, 86_400_000), None, "given up after a day");
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        for good in [
            "https://portal.example.com/hooks/paird",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:9/x",
            "http://localhost/x",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://portal.example.com/hook",
            "ftp://x",
            "https://",
            "https://user@host/x",
            "https://host/a b",
            "http://10.0.0.1/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audit_actions_map_to_their_kinds() {
        let entry = |action: &str, details| NewAudit {
            org_id: None,
            at: Timestamp(0),
            actor: String::new(),
            action: action.into(),
            subject: None,
            details,
            devices: Vec::new(),
        };
        assert_eq!(
            kind_of(&entry("device.paired", json!({}))),
            Some("pairings")
        );
        assert_eq!(
            kind_of(&entry("device.replaced", json!({}))),
            Some("unpairings")
        );
        assert_eq!(
            kind_of(&entry(
                "pairing.refused",
                json!({"reason": "no_free_license"})
            )),
            Some("no_free_license")
        );
        assert_eq!(
            kind_of(&entry("pairing.refused", json!({"reason": "code_used"}))),
            None
        );
        assert_eq!(kind_of(&entry("configuration.updated", json!({}))), None);
    }
}
