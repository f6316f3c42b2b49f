//! mxg's data plane: the inbound SMTP server, the outbound SMTP client and
//! the engine that runs both on one tokio runtime and talks to the control
//! plane through plain-data jobs and batched events.
//!
//! It decides nothing about policy: a delivery job says which hosts to try
//! and which transport level is required, and the client enforces it.

pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod inbound;
pub mod job;
pub mod level;
pub mod outbound;
pub mod profile;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod vocab;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::EngineError;
pub use events::{Event, EventBus};
pub use job::{DeliveryJob, ProbeJob, RecipientResult};
pub use level::TlsLevel;
pub use vocab::{vocabulary, Method, Reason};
