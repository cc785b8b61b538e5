//! A faithful stand-in for video-generation providers, for tests and the demo: it serves the
//! kie contract on loopback, finishes tasks after a set time, serves a real MP4 per task, and
//! counts every paid create so tests can prove nothing was submitted twice.

mod callbacks;
mod kie;
mod simulator;
mod video;

pub use simulator::{CallbackMode, SimConfig, SimEvent, SimStats, Simulator};
pub use video::render_video;
