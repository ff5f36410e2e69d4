//! The background duties of a node, each in its own module and its own task:
//!
//! - [`expiry`]: ends pairings whose license expired, even if nobody looks, and (with
//!   [`rollouts`]) halts or promotes the staged rollouts that are due;
//! - [`heartbeat`]: records that this node is alive, and gives up on nodes that are not;
//! - [`housekeeping`]: forgets old failure windows and idempotency records;
//! - [`announce`]: tells other nodes which live feeds are watched here;
//! - [`listen`]: hands other nodes' changes to the organizations they concern here;
//! - [`words`]: keeps the search's word index up to date, while the writer is quiet;
//! - [`retention`]: deletes audit entries older than the audit retention, if one is set.
//! - `usage`: writes when tokens and keys were last used (`crate::usage`), once a minute.
//!
//! [`Duties::start`] starts them all; [`Duties::stop`] stops them and waits.

pub(crate) mod announce;
pub(crate) mod expiry;
pub(crate) mod heartbeat;
pub(crate) mod housekeeping;
pub(crate) mod listen;
pub(crate) mod retention;
pub(crate) mod rollouts;
pub(crate) mod words;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::events::WATCH_ANNOUNCE_INTERVAL;
use crate::ids::Timestamp;
use crate::node::Node;
use crate::store::ChangeFeed;
use crate::supervisor::Actors;

/// How often housekeeping runs.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// How often the words duty looks for devices to index.
const WORDS_INTERVAL: Duration = Duration::from_millis(250);

/// The running duties.
#[derive(Debug)]
pub(crate) struct Duties {
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Duties {
    /// Starts every duty on the current runtime. `feed` is the store's change feed, on a
    /// backend shared by several nodes.
    pub fn start(node: &Arc<Node>, actors: &Actors, feed: Option<Box<dyn ChangeFeed>>) -> Duties {
        let (stop, stopped) = watch::channel(false);
        let sweep_every = node.settings.sweep_interval;
        let mut tasks = Vec::new();
        {
            let (node, actors) = (Arc::clone(node), actors.clone());
            let mut turns = Turns::new(sweep_every, Some(&node.clock), &stopped);
            tasks.push(tokio::spawn(async move {
                while turns.next().await {
                    expiry::sweep(&node, &actors).await;
                }
            }));
        }
        {
            let node = Arc::clone(node);
            let mut turns = Turns::new(sweep_every, Some(&node.clock), &stopped);
            tasks.push(tokio::spawn(async move {
                while turns.next().await {
                    heartbeat::beat(&node).await;
                }
            }));
        }
        {
            let node = Arc::clone(node);
            let mut turns = Turns::new(HOUSEKEEPING_INTERVAL, None, &stopped);
            tasks.push(tokio::spawn(async move {
                while turns.next().await {
                    housekeeping::tidy(&node).await;
                }
            }));
        }
        {
            let node = Arc::clone(node);
            let mut turns = Turns::new(WATCH_ANNOUNCE_INTERVAL, None, &stopped);
            tasks.push(tokio::spawn(async move {
                while turns.next().await {
                    announce::watched_here(&node).await;
                }
            }));
        }
        {
            let node = Arc::clone(node);
            let mut turns = Turns::new(WORDS_INTERVAL, None, &stopped);
            tasks.push(tokio::spawn(async move {
                let mut indexer = words::Indexer::new();
                while turns.next().await {
                    indexer.turn(&node).await;
                }
            }));
        }
        if node.settings.audit_retention.is_some() {
            let node = Arc::clone(node);
            let mut turns = Turns::new(HOUSEKEEPING_INTERVAL, Some(&node.clock), &stopped);
            tasks.push(tokio::spawn(async move {
                while turns.next().await {
                    retention::prune_audit(&node).await;
                }
            }));
        }
        {
            // Last uses of tokens and keys: written once a minute (and at a manual clock's
            // jumps), and a last time when the node stops, so that none noted is lost.
            let node = Arc::clone(node);
            let mut turns = Turns::new(
                crate::usage::USAGE_FLUSH_INTERVAL,
                Some(&node.clock),
                &stopped,
            );
            tasks.push(tokio::spawn(async move {
                while turns.next().await {
                    node.usage.write(node.store.as_ref()).await;
                }
                node.usage.write(node.store.as_ref()).await;
            }));
        }
        if let Some(feed) = feed {
            let (node, actors) = (Arc::clone(node), actors.clone());
            tasks.push(tokio::spawn(listen::run(node, actors, feed, stopped)));
        }
        Duties {
            stop,
            tasks: Mutex::new(tasks),
        }
    }

    /// Stops every duty and waits for each to finish what it was doing.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = self
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// A duty's turns: every `interval` (the first at once) and, for a duty that waits for time to
/// pass, whenever a manual clock jumps; none after the stop.
struct Turns {
    interval: tokio::time::Interval,
    jumps: Option<watch::Receiver<Timestamp>>,
    stopped: watch::Receiver<bool>,
}

impl Turns {
    fn new(
        interval: Duration,
        clock: Option<&Arc<dyn Clock>>,
        stopped: &watch::Receiver<bool>,
    ) -> Turns {
        let mut interval = tokio::time::interval(interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Turns {
            interval,
            jumps: clock.and_then(|clock| clock.jumps()),
            stopped: stopped.clone(),
        }
    }

    /// Waits for the next turn; false once the node stops.
    async fn next(&mut self) -> bool {
        let Turns {
            interval,
            jumps,
            stopped,
        } = self;
        if *stopped.borrow() {
            return false;
        }
        let jumped = async {
            match jumps.as_mut() {
                Some(jumps) => {
                    if jumps.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interval.tick() => true,
            () = jumped => true,
            _ = stopped.changed() => false,
        }
    }
}
