//! What changed between two revisions of a configuration: a unified diff of the bodies (as
//! `diff -u` prints it) and the lines added and removed.

use std::time::Duration;

use similar::{ChangeTag, TextDiff};

use super::get_configuration_revision::saved;
use super::{Query, Reader};
use crate::error::EngineError;
use crate::ids::ConfigId;
use crate::model::ConfigurationDiff;

/// The most time one diff may take: past it the diff is still right but may be longer than
/// the shortest (bodies are at most 256 KiB; this bounds the worst case of two unrelated ones).
const DIFF_TIME_BUDGET: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy)]
pub struct DiffConfigurationRevisions {
    pub config_id: ConfigId,
    pub from: u64,
    pub to: u64,
}

impl Query for DiffConfigurationRevisions {
    type Answer = ConfigurationDiff;

    async fn read(&self, reader: &Reader<'_>) -> Result<ConfigurationDiff, EngineError> {
        let from = saved(reader, self.config_id, self.from).await?;
        let to = saved(reader, self.config_id, self.to).await?;
        let (old, new) = (from.body.unwrap_or_default(), to.body.unwrap_or_default());
        let (from_revision, to_revision) = (self.from, self.to);
        // Diffing is CPU work of up to the budget: off the runtime's worker threads.
        let (lines_added, lines_removed, unified) =
            tokio::task::spawn_blocking(move || diff(&old, &new, from_revision, to_revision))
                .await
                .map_err(|_| EngineError::Internal)?;
        Ok(ConfigurationDiff {
            configuration_id: self.config_id,
            from_revision: self.from,
            to_revision: self.to,
            lines_added,
            lines_removed,
            name_changed: from.name != to.name,
            unified,
        })
    }
}

/// Lines added, lines removed, and the unified diff of `old` (revision `from`) and `new`.
fn diff(old: &str, new: &str, from: u64, to: u64) -> (u64, u64, String) {
    let diff = TextDiff::configure()
        .timeout(DIFF_TIME_BUDGET)
        .diff_lines(old, new);
    let (mut added, mut removed) = (0u64, 0u64);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => added += 1,
            ChangeTag::Delete => removed += 1,
            ChangeTag::Equal => {}
        }
    }
    let unified = if added == 0 && removed == 0 {
        String::new()
    } else {
        diff.unified_diff()
            .context_radius(3)
            .header(&format!("revision {from}"), &format!("revision {to}"))
            .to_string()
    };
    (added, removed, unified)
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn a_changed_line_is_one_removed_and_one_added_with_context() {
        let old = "[GLOBAL]\na = 1\nb = 2\n";
        let new = "[GLOBAL]\na = 1\nb = 3\nc = 4\n";
        let (added, removed, unified) = diff(old, new, 1, 2);
        assert_eq!((added, removed), (2, 1));
        assert_eq!(
            unified,
            "--- revision 1\n+++ revision 2\n@@ -1,3 +1,4 @@\n [GLOBAL]\n a = 1\n-b = 2\n+b = 3\n+c = 4\n"
        );
    }

    #[test]
    fn the_same_bodies_have_no_diff() {
        assert_eq!(diff("a\n", "a\n", 3, 1), (0, 0, String::new()));
    }

    #[test]
    fn a_missing_final_newline_is_shown() {
        let (added, removed, unified) = diff("a\nb", "a\nb\n", 1, 2);
        assert_eq!((added, removed), (1, 1));
        assert!(
            unified.contains("\\ No newline at end of file"),
            "{unified}"
        );
    }
}
