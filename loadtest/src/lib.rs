//! paird's load tester as a library: the scenarios, the simulated fleets, the verification.
//! The `paird-loadtest` binary is a thin command line over it; tests drive it directly.

pub mod admin;
pub mod bulk;
pub mod cluster;
pub mod crash_cycles;
pub mod fleet;
pub mod lists;
pub mod page;
pub mod procstat;
pub mod report;
pub mod scenarios;
pub mod seeded;
pub mod soak;
pub mod spawn;
pub mod verify;
pub mod workers;
