//! End-to-end tests: real redis-server, the simulator on loopback, workers as real processes
//! (or in-process where a test needs no process boundary), videos in a temp directory.

mod crash;
mod harness;
mod pipeline;
mod provider_errors;
mod resilience;
