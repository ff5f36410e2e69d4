//! Black-box tests: a real paird (in this process, or as child processes) on 127.0.0.1, a real
//! database, real WebSocket devices and real HTTP admin calls. The database is a SQLite file in
//! a temporary directory, or with `PAIRD_TEST_BACKEND=postgres` a fresh database on a throwaway
//! PostgreSQL cluster (see `support.rs`).
//!
//! One test binary with one module per area, so that the suite links once.

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod support;

mod audit;
mod audit_flood;
mod audit_retention;
mod backpressure;
mod backup;
mod bulk;
mod codes;
mod concurrency;
mod configuration_history;
mod configurations;
mod devices;
mod disk_faults;
mod events;
mod export;
mod fleet;
mod health;
mod hostile_clients;
mod idempotency;
mod inactive_release;
mod isolation;
mod licenses;
mod limits;
mod logs;
mod metrics;
mod new_device_configuration;
mod openapi;
mod pairing;
mod processes;
mod proxy;
mod quotas;
mod replace;
mod reuse_port;
mod robustness;
mod rollouts;
mod secrets_at_rest;
mod supervision;
mod tls;
mod tokens;
mod unpair;
mod waiting;
mod webhooks;
