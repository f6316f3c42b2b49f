//! The inbound SMTP server: accepts mail from the organisation's internal
//! mail server, spools it durably and reports it to the control plane.

mod admission;
mod budget;
mod inflow;
mod intake;
mod listener;
mod refusal;
mod reload;
mod session;
mod trace;
mod verdict;

pub use admission::{Admission, Place};
pub use budget::{MemoryBudget, Share};
pub use inflow::Inflow;
pub use intake::{Intake, IntakeMode};
pub use listener::{
    bind, serve, Listeners, OutsiderPolicy, Outsiders, ServerShared, DEFAULT_MESSAGE_MEMORY,
};
pub use refusal::Refusal;
pub use reload::CurrentShared;
pub use verdict::{DeferReply, Verdict, VerdictScreen, Verdicts};
