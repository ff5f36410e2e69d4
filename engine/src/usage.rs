//! When operator tokens and organization keys were last used, recorded off the request path.
//!
//! Authenticating a request notes the credential's use here, in memory (one map insert under
//! a short lock, never held across an await). The `usage` duty writes what was noted, in one
//! transaction, every [`USAGE_FLUSH_INTERVAL`] and when the node stops: so each credential's
//! `last_used_at` is written at most once a minute however many requests use it, and no admin
//! request waits for a write of its own. Listings merge what is noted but not yet written, so
//! they show a use at once on the node that saw it; other nodes see it after the next write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::ids::{KeyId, OperatorTokenId, Timestamp};
use crate::store::{Credential, NodeStore};

/// How often noted uses are written.
pub(crate) const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// The uses noted since the last write. At most one entry per credential that authenticated a
/// request, so its size is bounded by the number of valid tokens and keys (which quotas bound).
#[derive(Debug, Default)]
pub(crate) struct Usage {
    noted: Mutex<HashMap<Credential, Timestamp>>,
}

impl Usage {
    /// Notes that `credential` was used at `at` (a later use replaces an earlier one).
    pub fn note(&self, credential: Credential, at: Timestamp) {
        if let Ok(mut noted) = self.noted.lock() {
            let entry = noted.entry(credential).or_insert(at);
            *entry = (*entry).max(at);
        }
    }

    /// The use noted for `credential` and not written yet.
    pub fn noted(&self, credential: Credential) -> Option<Timestamp> {
        self.noted.lock().ok()?.get(&credential).copied()
    }

    /// The later of a stored last use and a noted one.
    pub fn last_used(
        &self,
        credential: Credential,
        stored: Option<Timestamp>,
    ) -> Option<Timestamp> {
        stored.max(self.noted(credential))
    }

    /// Writes every noted use in one transaction. What cannot be written is noted again, so
    /// that the next turn tries it (a later use noted meanwhile wins).
    pub async fn write(&self, store: &dyn NodeStore) {
        let uses: Vec<(Credential, Timestamp)> = match self.noted.lock() {
            Ok(mut noted) => noted.drain().collect(),
            Err(_) => return,
        };
        if uses.is_empty() {
            return;
        }
        if let Err(error) = store.record_uses(&uses).await {
            tracing::warn!(%error, count = uses.len(), "cannot record when credentials were last used");
            for (credential, at) in uses {
                self.note(credential, at);
            }
        }
    }
}

/// The credential an operator token id names.
pub(crate) fn operator_token(id: OperatorTokenId) -> Credential {
    Credential::OperatorToken(id)
}

/// The credential an organization key id names.
pub(crate) fn org_key(id: KeyId) -> Credential {
    Credential::OrgKey(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_use_replaces_an_earlier_one_and_never_the_reverse() {
        let usage = Usage::default();
        let key = org_key(KeyId::generate());
        usage.note(key, Timestamp(2_000));
        usage.note(key, Timestamp(1_000));
        assert_eq!(usage.noted(key), Some(Timestamp(2_000)));
        assert_eq!(
            usage.last_used(key, Some(Timestamp(3_000))),
            Some(Timestamp(3_000))
        );
        assert_eq!(usage.last_used(key, None), Some(Timestamp(2_000)));
        let other = operator_token(OperatorTokenId::generate());
        assert_eq!(usage.last_used(other, None), None);
    }
}
