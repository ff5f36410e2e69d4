//! The paird engine: the domain rules of pairing devices with organizations, handing out
//! licenses and keeping devices on their configuration.
//!
//! No sockets, no HTTP, no SQL text: the server drives the engine through [`Engine`], and the
//! engine reaches storage through the [`store::Store`] trait (implemented in the `store` crate).
//!
//! Layout:
//! - [`engine`]: the facade ([`Engine`]) — device requests (pair, resume, acknowledge) and admin
//!   commands, with authorization.
//! - `org`, `supervisor`: one actor per organization, the batching and serialization point, and
//!   the supervisor that starts actors lazily and restarts them after a failure.
//! - `batch`: group commit of device requests: the pairing, reconnection and acknowledgement
//!   rules as set-based, conditional writes.
//! - `admin`: admin commands that change an organization, with audit and idempotency.
//! - `remote`: changes committed on other nodes (the store's change feed), applied to the devices
//!   connected here.
//! - [`events`]: the live feed of an organization (what changed, by id) and its watchers.
//! - [`link`]: the engine's handle on a device connection, and the registry of connected devices.
//! - [`store`]: the storage trait and its row types. [`model`]: what admins read.
//! - [`clock`], [`secrets`], [`limiter`], [`settings`], [`ids`], [`error`]: the small parts.
//! - [`runtime_thread`]: a single-threaded runtime on a thread of its own (the actors run on one;
//!   the server runs its admin API on another).

pub mod clock;
pub mod error;
pub mod events;
pub mod ids;
pub mod limiter;
pub mod link;
pub mod model;
pub mod runtime_thread;
pub mod secrets;
pub mod settings;
pub mod store;

mod admin;
mod batch;
mod context;
mod engine;
mod org;
mod remote;
mod supervisor;

pub use admin::{
    IdempotencyKey, Principal, REUSABLE_VALIDITY_DEFAULT, REUSABLE_VALIDITY_MAX,
    REUSABLE_VALIDITY_MIN, SINGLE_USE_VALIDITY_DEFAULT, SINGLE_USE_VALIDITY_MAX,
    SINGLE_USE_VALIDITY_MIN, check_configuration_body, code_status,
};
pub use batch::{AckAnswer, PairAnswer, PairedDevice, ResumeAnswer, ResumedDevice};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::MetricsSnapshot;
pub use engine::{
    AddedLicenses, CreatedKey, Engine, ReusableCodeSpec, StartError, new_operator_token,
};
pub use error::EngineError;
pub use org::OrgSnapshot;
pub use runtime_thread::RuntimeThread;
pub use settings::EngineSettings;
pub use store::ConfigEdit;
