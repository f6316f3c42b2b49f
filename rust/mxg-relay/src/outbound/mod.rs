//! The outbound SMTP client: delivers jobs to receiving servers, enforcing
//! the required transport level before any MAIL FROM (ARCHITECTURE.md rule 1).

mod conn;
mod deliver;
mod pool;
mod probe;
mod rewrite;
mod wire;

pub use deliver::deliver;
pub use pool::Client;
pub use probe::probe;
