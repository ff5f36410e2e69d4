//! The search's word index (`NodeStore::index_words`): devices paired, renamed, given a name or
//! notes by an admin, or ended since their entry was made are brought up to date a batch at a
//! time, while the node's writer is quiet. A pairing never waits for it: the fleet lists read
//! the devices it has not reached yet directly (slower, never wrong), so it only has to catch
//! up, not keep up.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::node::Node;

/// Devices per batch (one write transaction).
const BATCH: u32 = 500;
/// Batches per turn at most; the next turn goes on.
const MAX_BATCHES: usize = 40;
/// A turn starts once the engine's own write batches (pairings, acknowledgements) have paused
/// this long...
const QUIET: Duration = Duration::from_millis(50);
/// ...or, while they never pause, once this long has passed since the last one, so that a
/// fleet that pairs without a break is still indexed.
const AT_LEAST_EVERY: Duration = Duration::from_secs(2);

/// The duty's memory between turns.
#[derive(Debug)]
pub(crate) struct Indexer {
    last_batch: Instant,
}

impl Indexer {
    pub(crate) fn new() -> Indexer {
        Indexer {
            last_batch: Instant::now(),
        }
    }

    /// One turn: batches while the writer is quiet and there is work; returns how many
    /// devices it brought up to date. Quiet: no write batch of the engine committed in the
    /// pause before the first batch, nor during the batch before each next one. A pairing that
    /// comes meanwhile waits for one batch at most (the writer's pool serves waiters in turn).
    pub(crate) async fn turn(&mut self, node: &Node) -> u64 {
        let batches = || node.counters.batches.load(Ordering::Relaxed);
        let mut seen = batches();
        tokio::time::sleep(QUIET).await;
        let mut indexed = 0;
        for _ in 0..MAX_BATCHES {
            let now = batches();
            let busy = now != seen;
            seen = now;
            if busy && self.last_batch.elapsed() < AT_LEAST_EVERY {
                break;
            }
            self.last_batch = Instant::now();
            match node.store.index_words(BATCH).await {
                Ok(count) => {
                    indexed += count;
                    if count < u64::from(BATCH) {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot index the search's words");
                    break;
                }
            }
        }
        indexed
    }
}
