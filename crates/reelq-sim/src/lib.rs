//! A faithful stand-in for video-generation providers, for tests and the demo: it serves the
//! kie, acedata, evolink and OpenAI-compatible contracts on one loopback port, finishes tasks
//! after a set time, serves a real MP4 per task, and counts every paid create so tests can
//! prove nothing was submitted twice. A prompt containing [`MODERATED_WORD`] is refused by
//! moderation and one containing [`FAILING_WORD`] fails its generation.

mod acedata;
mod ark;
mod callbacks;
mod config;
mod contract;
mod contracts;
mod control;
mod dashscope;
mod evolink;
mod fal;
mod gemini;
mod journal;
mod kie;
mod kling;
mod openai;
mod replicate;
mod served;
mod simulator;
mod video;

pub use contract::{FAILING_WORD, MODERATED_WORD};
pub use fal::webhook_headers as fal_webhook_headers;
pub use journal::Exchange;
pub use kie::SIMULATED_CREDITS;
pub use served::served_catalog;
pub use simulator::{CallbackMode, SimConfig, SimEvent, SimStats, Simulator};
pub use video::{VideoShape, render_video};
