//! `mxg-benchsink`: an SMTP receiving sink for benchmarks.
//!
//! Accepts every envelope and discards every message, counting what it
//! accepted. It exists so that relay benchmarks measure the relay and not
//! the receiver: replies are batched (RFC 2920 pipelining), message content
//! is scanned as a byte stream and never stored, and one task serves each
//! connection on a multi-thread tokio runtime.
//!
//! The library target exists so integration tests can bind port 0 and drive
//! the server in-process; the binary (`main.rs`) only adds the CLI, signals
//! and the periodic stats file.
//!
//! The sending side of the benchmarks, `mxg-benchload`, lives in [`load`]
//! for the same reason: its tests run it against this sink in-process.

pub mod cli;
pub mod conn;
pub mod dot;
pub mod load;
pub mod server;
pub mod session;
pub mod stats;
pub mod tls;

pub use server::{bind, serve, Settings};
pub use stats::{Snapshot, Stats};
