//! The inbound SMTP server: accepts mail from the organisation's internal
//! mail server, spools it durably and reports it to the control plane.

mod inflow;
mod listener;
mod session;
mod trace;
mod verdict;

pub use inflow::Inflow;
pub use listener::{bind, serve, Listeners, OutsiderPolicy, Outsiders, ServerShared};
pub use verdict::{Verdict, VerdictScreen, Verdicts};
