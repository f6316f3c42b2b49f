//! The durable spool: one file per message, written and fsynced before the
//! server says "250" (ARCHITECTURE.md rule 9), the source of truth after a
//! crash (rule 10). The format is documented in `docs/spool-format.md`.

mod commit;
mod envelope;
mod error;
mod file;
mod nofollow;
mod queue_id;
mod recycle;
mod restore;

pub use commit::{CommitCallback, Reserved, Spool};
pub use envelope::{Envelope, Recipient};
pub use error::SpoolError;
pub use file::{parse_spool_file, spool_file_bytes, spool_file_head, MAGIC};
pub use nofollow::read as read_file;
pub use queue_id::{is_queue_id, new_queue_id};
