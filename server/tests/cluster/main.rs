//! Cluster tests: three real `paird serve` processes on one PostgreSQL database, real WebSocket
//! devices and real HTTP admin calls, all on loopback.
//!
//! Every test creates a database of its own (and its own organizations) on one throwaway
//! PostgreSQL cluster shared by the binary (`harness::shared_postgres`), and starts three nodes
//! on it, so the tests run in parallel like any other. The exception is the outage test, which
//! stops and restarts PostgreSQL: it starts a cluster of its own, since stopping the shared one
//! would take every other test's database down with it.
//!
//! Running them in parallel is not too heavy: with libtest's default (one test per core) a few
//! nodes run at once; even `--test-threads=10` (thirty paird processes and two PostgreSQL
//! clusters) passed on two shared cores in about 11 seconds, the same as the default.
//!
//! Each node logs to a file; when a test fails, the last lines of its three nodes' logs are
//! printed with the failure (`PAIRD_TEST_LOG` sets their `RUST_LOG`, `info` by default).
//!
//! Layout: `harness` (nodes, the shared cluster, SQL checks, a connection gate); `pairing`
//! (races and retries across nodes); `failover` (the PostgreSQL primary killed under two nodes,
//! on a pg_auto_failover formation of its own); `notifications` (admin commands reaching devices on other
//! nodes, a lost LISTEN connection); `failures` (a node killed mid-burst, a device moving to
//! another node, PostgreSQL stopped and started); `presence` (a killed node's devices);
//! `lifecycle` (a replacement, the inactive release, a staged rollout and the waiting line across
//! nodes).

// Tests fail loudly by design: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

// The black-box suite's admin client and device helpers; this binary uses part of them.
#[allow(dead_code)]
#[path = "../blackbox/support.rs"]
mod support;

mod harness;

mod failover;
mod failures;
mod lifecycle;
mod notifications;
mod pairing;
mod presence;
