//! End-to-end tests: real redis-server, the simulator on loopback, workers as real processes
//! (or in-process where a test needs no process boundary), videos in a temp directory. The
//! harness is `reelq-e2e` (the workspace's `tests/` folder); it needs this crate's binary.

mod accounts;
mod archive;
mod budgets;
mod callbacks;
mod catalog;
mod chaos;
mod cluster;
mod crash;
mod dashboard;
mod deployment;
mod deployment_access;
mod limits;
mod listeners;
mod notify;
mod ops;
mod pipeline;
mod provider_errors;
mod providers;
mod redis_user;
mod resilience;
mod rollback;
mod routes;
mod traces;
