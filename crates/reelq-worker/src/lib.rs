//! The reelq worker: a loop that claims due jobs from the ledger and runs one short step for
//! each (submit, poll or fetch), so a job waiting on its provider holds no slot, task or
//! connection. Any number of replicas can run against one Redis.

mod accounts;
pub mod archiver;
mod callbacks;
mod claim_loop;
mod config;
mod decision;
mod error;
mod heartbeat;
mod inspect;
mod notify;
mod ops;
mod paid_creates;
mod reconcile;
mod rollback;
mod runner;
mod steps;
pub mod telemetry;

pub use accounts::{AccountVerdict, check_accounts};
pub use config::{
    CallbacksConfig, ConfiguredAccount, HistoryConfig, NotifyConfig, ProviderAccount,
    ProvidersConfig, Role, S3Config, StoreConfig, TelemetryConfig, WorkerConfig,
};
pub use error::WorkerError;
pub use runner::{Listeners, check_config, run};
