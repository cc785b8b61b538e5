//! Integration tests for the ledger against a real redis-server.

mod archive;
mod cluster;
mod durability;
mod enqueue;
mod history;
mod ledger;
mod moves;
mod partitioning;
mod partitions;
mod routes;
mod tenants;
mod tidy;
mod upgrade;
