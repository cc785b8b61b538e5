//! Integration tests for the producer client against a real redis-server.

mod api;
mod enqueue;
mod openapi;
mod tokens;
mod usage;
