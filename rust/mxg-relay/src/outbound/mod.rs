//! The outbound SMTP client: delivers jobs to receiving servers, enforcing
//! the required transport level before any MAIL FROM (ARCHITECTURE.md rule 1).

mod auth_plan;
mod conn;
mod deliver;
mod envelope;
mod open;
mod pool;
mod probe;
mod protection;
mod rewrite;
mod wire;

pub use deliver::deliver;
pub use pool::Client;
pub use probe::probe;
