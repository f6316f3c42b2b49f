//! One mail transaction (RFC 5321 §3.3): envelope, content, and the timed
//! end of data.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::client::Client;
use super::envelope::Recipients;
use super::message::Generator;

/// What a transaction needs that is the same for the whole run.
pub struct Plan {
    pub from: String,
    pub recipients: Recipients,
    pub generator: Generator,
    /// Pipeline the envelope where the server offers PIPELINING.
    pub pipelining: bool,
}

/// Buffers a session reuses from one transaction to the next.
#[derive(Default)]
pub struct Scratch {
    out: Vec<u8>,
    rcpts: Vec<String>,
}

/// How a transaction ended, short of a lost connection (that is an `Err`).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The end of data got a 2xx `latency` after the final `.` was written,
    /// and `transaction` after MAIL was.
    Accepted {
        latency: Duration,
        transaction: Duration,
        rcpts_refused: u64,
    },
    /// Refused with this code: that of MAIL, of the first RCPT if none was
    /// accepted, of DATA, or of the end of data.
    Refused(u16),
}

/// "Service not available, closing transmission channel" (RFC 5321
/// §3.8): the server is going away, the connection is done for.
pub const CLOSING: u16 = 421;

/// Result of the envelope phase.
enum Envelope {
    /// DATA got its 354; the content may follow.
    Ready {
        rcpts_refused: u64,
    },
    Refused(u16),
}

/// Runs the transaction for message `n` on an open session.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    plan: &Plan,
    n: u64,
    scratch: &mut Scratch,
) -> io::Result<Outcome> {
    plan.recipients.expand(n, &mut scratch.rcpts);
    // The whole transaction, too: a server may keep a sender waiting
    // before its 354 instead of after the data (Postfix while it waits for
    // a cleanup process, mxg at max_receiving), and only this shows it.
    let started = Instant::now();
    let envelope = if plan.pipelining && client.pipelining() {
        pipelined(client, plan, scratch).await?
    } else {
        lockstep(client, plan, scratch).await?
    };
    let rcpts_refused = match envelope {
        Envelope::Ready { rcpts_refused } => rcpts_refused,
        Envelope::Refused(code) => return Ok(Outcome::Refused(code)),
    };
    scratch.out.clear();
    plan.generator.write(n, &scratch.rcpts[0], &mut scratch.out);
    client.send(&scratch.out).await?;
    // The accept latency: what the sender waits for once it has said all
    // it has to say. For a relay this is mostly its durable commit.
    let t0 = Instant::now();
    client.send(b".\r\n").await?;
    let code = client.reply().await?;
    let latency = t0.elapsed();
    Ok(if is_positive(code) {
        Outcome::Accepted {
            latency,
            transaction: started.elapsed(),
            rcpts_refused,
        }
    } else {
        Outcome::Refused(code)
    })
}

/// MAIL, every RCPT and DATA in one write, then their replies in order
/// (RFC 2920 §3.1: DATA may end a pipelined group).
async fn pipelined<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    plan: &Plan,
    scratch: &mut Scratch,
) -> io::Result<Envelope> {
    let out = &mut scratch.out;
    out.clear();
    out.extend_from_slice(format!("MAIL FROM:<{}>\r\n", plan.from).as_bytes());
    for rcpt in &scratch.rcpts {
        out.extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
    }
    out.extend_from_slice(b"DATA\r\n");
    client.send(out).await?;

    // After a 421 the server closes; the replies still owed never come.
    let mail = client.reply().await?;
    if mail == CLOSING {
        return Ok(Envelope::Refused(mail));
    }
    let mut accepted = 0;
    let mut first_refusal = None;
    for _ in &scratch.rcpts {
        match client.reply().await? {
            CLOSING => return Ok(Envelope::Refused(CLOSING)),
            code if is_positive(code) => accepted += 1,
            code => {
                first_refusal.get_or_insert(code);
            }
        }
    }
    let data = client.reply().await?;
    let rcpts_refused = scratch.rcpts.len() as u64 - accepted;
    if data == 354 {
        if accepted > 0 {
            return Ok(Envelope::Ready { rcpts_refused });
        }
        // A server should not send 354 with no valid recipient; if it does,
        // RFC 2920 §3.1 has the client end the empty data at once.
        client.send(b".\r\n").await?;
        client.reply().await?;
        return Ok(Envelope::Refused(first_refusal.unwrap_or(data)));
    }
    if data == CLOSING {
        return Ok(Envelope::Refused(data));
    }
    let code = if !is_positive(mail) {
        mail
    } else if accepted == 0 {
        first_refusal.unwrap_or(data)
    } else {
        data
    };
    if is_positive(mail) {
        rset(client).await?;
    }
    Ok(Envelope::Refused(code))
}

/// One command, one reply, as without PIPELINING.
async fn lockstep<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    plan: &Plan,
    scratch: &mut Scratch,
) -> io::Result<Envelope> {
    client
        .send(format!("MAIL FROM:<{}>\r\n", plan.from).as_bytes())
        .await?;
    let mail = client.reply().await?;
    if !is_positive(mail) {
        return Ok(Envelope::Refused(mail));
    }
    let mut accepted = 0;
    let mut first_refusal = None;
    for rcpt in &scratch.rcpts {
        client
            .send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .await?;
        match client.reply().await? {
            CLOSING => return Ok(Envelope::Refused(CLOSING)),
            code if is_positive(code) => accepted += 1,
            code => {
                first_refusal.get_or_insert(code);
            }
        }
    }
    let rcpts_refused = scratch.rcpts.len() as u64 - accepted;
    if let (0, Some(code)) = (accepted, first_refusal) {
        rset(client).await?;
        return Ok(Envelope::Refused(code));
    }
    client.send(b"DATA\r\n").await?;
    match client.reply().await? {
        354 => Ok(Envelope::Ready { rcpts_refused }),
        CLOSING => Ok(Envelope::Refused(CLOSING)),
        code => {
            rset(client).await?;
            Ok(Envelope::Refused(code))
        }
    }
}

/// Abandons the open transaction so the next MAIL is not "nested".
async fn rset<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>) -> io::Result<()> {
    client.send(b"RSET\r\n").await?;
    client.reply().await.map(drop)
}

fn is_positive(code: u16) -> bool {
    (200..300).contains(&code)
}
