//! SMTP protocol pieces shared by mxg's inbound server and outbound client.
//!
//! Pure code, no I/O: a command-line framer with a length limit, mxg's own
//! reader for MAIL, RCPT and BDAT and the address grammar (`address`,
//! `envelope`), a wrapper over `smtp-proto`'s parser for the rest, reply formatting and parsing, and the
//! DATA / BDAT body readers that refuse SMTP-smuggling shapes instead of
//! normalising them into a message end.

pub mod address;
pub mod command;
pub mod data;
pub mod envelope;
pub mod limits;
pub mod reply;

pub use command::{parse_command, Command, CommandError, LineFramer};
pub use data::{BdatReader, DataError, DataProgress, DataReader};
pub use envelope::{Bdat, MailArgs, RcptArgs};
pub use limits::Limits;
pub use reply::{Reply, ReplyParser};
