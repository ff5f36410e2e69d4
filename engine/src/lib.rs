//! The paird engine: the domain rules of pairing devices with organizations, handing out
//! licenses and keeping devices on their configuration.
//!
//! No sockets, no HTTP, no SQL text, no wire format: the server drives the engine through
//! [`Engine`] in the engine's own words, and the engine reaches storage through the
//! [`store::Store`] traits (implemented in the `store` crate).
//!
//! Layout, from the facade down:
//! - [`Engine`] (`engine.rs`): start and stop, admin commands ([`Engine::run`]), queries
//!   ([`Engine::query`]), access, the operator's view. `device.rs`: the device entry points
//!   (`pair`, `resume`, `acknowledge`, `disconnected`) in the words of [`session`].
//! - [`admin`]: the admin commands, one type and one file each, and how a command runs in its
//!   organization's transaction (idempotency, audit, effects on connected devices).
//! - [`query`]: the admin reads, one type and one file each, behind one access check.
//! - `supervisor`: the organization actors' supervisor and directory, and `Actors`, how the
//!   engine reaches them. `org`: one actor per organization, the batching and serialization
//!   point.
//! - `batch`: group commit of device requests: read, a pure plan (`batch::plan`), write.
//! - `remote`: changes committed on other nodes, applied to the devices connected here.
//! - `duties`: the background duties (expiry sweep, heartbeat, housekeeping, live-feed
//!   announcements, the change listener).
//! - `node`: what this process holds (store, clock, connected devices, caches, limits,
//!   counters), shared by all of the above.
//! - [`events`]: the live feed of an organization (what changed, by id) and its watchers.
//! - [`link`]: the engine's handle on a device connection, and the registry of connected devices.
//! - [`store`]: the storage traits and their row types. [`model`]: what admins read.
//!   `audit`: what audit entries say of the things they concern, and the log's filter rules.
//! - [`clock`], [`secrets`], [`limiter`], [`settings`], [`ids`], [`error`], [`metrics`] (with
//!   [`histogram`]): the
//!   small parts; `ack_failures`: the audit log's throttle on failed acknowledgements. [`runtime_thread`]: a single-threaded runtime on a thread of its own (the
//!   actors run on one; the server runs its admin API on another).

pub mod admin;
pub mod clock;
pub mod error;
pub mod events;
pub mod histogram;
pub mod ids;
pub mod limiter;
pub mod link;
pub mod metrics;
pub mod model;
pub mod query;
pub mod runtime_thread;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod store;
pub mod webhooks;

mod ack_failures;
mod audit;
mod batch;
mod device;
mod duties;
mod engine;
mod node;
mod org;
mod remote;
mod supervisor;
mod usage;

pub use admin::{IdempotencyKey, Principal, check_configuration_body, new_operator_token};
pub use clock::{Clock, ManualClock, SystemClock};
pub use duties::expiry::Swept;
pub use engine::{DueDelivery, Engine, StartError, WEBHOOK_LEASE};
pub use error::EngineError;
pub use metrics::{DetailedMetrics, Metrics};
pub use model::code_status;
pub use org::OrgActorStatus;
pub use runtime_thread::RuntimeThread;
pub use session::{
    AckAnswer, AckOutcome, AckRequest, PairAnswer, PairRequest, PairedDevice, PresentedCode,
    Refusal, ResumeAnswer, ResumeRequest, ResumedDevice, SessionEnd, WaitChoice,
};
pub use settings::EngineSettings;
