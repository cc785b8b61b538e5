//! Provider adapters: each turns a [`reelq_core::JobSpec`] into one provider's create call,
//! reads its task status, and classes its every documented error into a
//! [`reelq_core::ErrorClass`]. Only this crate speaks provider HTTP.

mod error;
mod http;
mod kie;
mod provider;

pub use error::ProviderError;
pub use kie::{Kie, KieConfig, kie_signature};
pub use provider::{ByteStream, CallbackError, CallbackHint, Download, Provider, TaskStatus};
pub use reqwest::header::HeaderMap;
