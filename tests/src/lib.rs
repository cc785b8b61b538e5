//! reelq's system-test harness: [`Deployment`] stands up a whole deployment on loopback
//! (real Redis, the simulator, worker processes) for the end-to-end tests, and [`chaos`]
//! drives one through crashes and faults and reports what survived.

pub mod chaos;
mod deployment;
mod webhooks;

pub use deployment::{
    API_KEY, Deployment, PARTITIONED_BATCH, PARTITIONS, PREFIX, RedisSetup, SECOND_API_KEY,
    WEBHOOK_KEY, WEBHOOK_WHSEC, files_under, loopback_webhooks, prompts, read_object, retired_row,
    sim_events, test_catalog,
};
pub use webhooks::{NOTIFY_SECRET, WebhookReceiver};
