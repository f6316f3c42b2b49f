//! Delivering one job: hosts in order, the transport requirement checked
//! before MAIL FROM, per-recipient results.

use super::conn::{Caps, Conn, ConnError};
use super::envelope::{all_caps, mail_command, rcpt_command};
use super::open::open;
use super::pool::Client;
use super::protection;
use super::rewrite::rewrite;
use super::wire::dot_stuff;
use crate::events::Event;
use crate::job::{AttemptNote, DeliveryJob, Host, RecipientResult, Status};
use crate::level::TlsLevel;
use crate::vocab::Reason;
use mxg_smtp::Reply;
use mxg_spool::Recipient;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Runs a job to the end and reports it on the event bus.
pub async fn deliver(client: Arc<Client>, job: DeliveryJob) {
    let started_ms = now_ms();
    let dest = client.destination(&job.destination);
    let _permit = dest.slots.clone().acquire_owned().await;
    let mut run = Run {
        client: client.clone(),
        results: Vec::new(),
        attempts: Vec::new(),
        pending: job.recipients.clone(),
        last_error: None,
        unmet_seen: false,
        unmet_enhanced: None,
        other_failure_seen: false,
    };
    let policy = serde_json::to_string(&job.tls).unwrap_or_default();
    // What cannot be written safely for any server is bounced before any
    // connection (rule 12a), rather than waiting for a server to be reached.
    let _ = run.envelope_commands(&job, &all_caps(), 0);
    let message = if run.pending.is_empty() {
        Err(String::new())
    } else {
        read_message(&client, &job.queue_id).await
    };
    match message {
        _ if run.pending.is_empty() => {}
        Ok(message) => {
            let strip = strip_list(&job);
            let message = match rewrite(&message, &strip, job.subject_tag.as_deref()) {
                Some(changed) => changed,
                None => message,
            };
            let data = dot_stuff(&message);
            run.deliver(&job, &dest, &policy, message.len(), &data)
                .await;
        }
        Err(text) => run.last_error = Some(ConnError::new(Reason::LocalError, text)),
    }
    run.defer_pending(&job);
    client.bus.push(Event::DeliveryDone {
        job_id: job.job_id,
        queue_id: job.queue_id.clone(),
        destination: job.destination.clone(),
        results: run.results,
        attempts: run.attempts,
        started_ms,
        finished_ms: now_ms(),
    });
}

/// The header fields removed before the message leaves: the job's, and
/// with the protection header on, every field of its name (a sender must
/// not be able to put that claim there, `protection`).
fn strip_list(job: &DeliveryJob) -> std::borrow::Cow<'_, [String]> {
    if job.protection_header {
        let mut strip = job.strip_headers.clone();
        strip.push(protection::HEADER.to_owned());
        std::borrow::Cow::Owned(strip)
    } else {
        std::borrow::Cow::Borrowed(&job.strip_headers)
    }
}

/// Up to this size a spool read (just written, so from the page cache)
/// takes microseconds and is done on the async worker itself: a hop to the
/// blocking pool costs two thread switches per message, more than the read.
const INLINE_READ: u64 = 1 << 20;

async fn read_message(client: &Client, queue_id: &str) -> Result<Vec<u8>, String> {
    let spool = client.spool.clone();
    let read = if spool.file_len(queue_id).is_ok_and(|n| n <= INLINE_READ) {
        spool.read(queue_id)
    } else {
        let id = queue_id.to_owned();
        tokio::task::spawn_blocking(move || spool.read(&id))
            .await
            .map_err(|e| format!("local error: {e}"))?
    };
    read.map(|(_, message)| message)
        .map_err(|e| format!("local error: {e}"))
}

struct Run {
    client: Arc<Client>,
    results: Vec<RecipientResult>,
    attempts: Vec<AttemptNote>,
    /// Recipients without a result yet.
    pending: Vec<Recipient>,
    /// The most recent reason the pending recipients are still pending.
    last_error: Option<ConnError>,
    /// A server was reached but could not give the required level.
    unmet_seen: bool,
    /// Its most specific enhanced status code, if any.
    unmet_enhanced: Option<&'static str>,
    /// Some attempt failed for another reason (network, SMTP refusal):
    /// then the requirement is not known to be unmeetable.
    other_failure_seen: bool,
}

impl Run {
    async fn deliver(
        &mut self,
        job: &DeliveryJob,
        dest: &super::pool::Destination,
        policy: &str,
        size: usize,
        data: &[u8],
    ) {
        // A connection left open by an earlier job to this destination under
        // the same policy; if it went stale, fall through to fresh ones.
        if let Some(conn) = self.client.take_idle(dest, policy, &job.hosts) {
            self.client.stats.connection_reused();
            if let Some(conn) = self.transaction(job, conn, size, data).await {
                self.client.put_idle(dest, policy.to_owned(), conn).await;
            }
            if self.pending.is_empty() {
                return;
            }
        }
        for host in &job.hosts {
            for ip in &host.addresses {
                if self.pending.is_empty() {
                    return;
                }
                let conn = match self.open(job, host, *ip).await {
                    Ok(conn) => {
                        self.client.stats.connection_opened();
                        conn
                    }
                    Err(e) => {
                        if e.unmet {
                            self.unmet_seen = true;
                            self.unmet_enhanced = e.enhanced.or(self.unmet_enhanced);
                        } else {
                            self.other_failure_seen = true;
                        }
                        self.note(&host.name, &ip.to_string(), &e);
                        self.last_error = Some(e);
                        continue;
                    }
                };
                if let Some(conn) = self.transaction(job, conn, size, data).await {
                    self.client.put_idle(dest, policy.to_owned(), conn).await;
                }
            }
        }
        if job.hosts.iter().all(|h| h.addresses.is_empty()) && self.last_error.is_none() {
            self.last_error = Some(ConnError::new(
                Reason::ConnectionFailed,
                "no address to deliver to",
            ));
        }
    }

    fn note(&mut self, host: &str, ip: &str, error: &ConnError) {
        self.attempts.push(AttemptNote {
            host: host.to_owned(),
            ip: ip.to_owned(),
            error: error.text.clone(),
            reason: Some(error.reason),
        });
    }

    /// Connects, greets and brings the session to the required level. The
    /// requirement is checked there, before any MAIL FROM (rule 1).
    async fn open(&self, job: &DeliveryJob, host: &Host, ip: IpAddr) -> Result<Conn, ConnError> {
        open(&self.client, &job.tls, host, ip).await
    }

    /// One mail transaction on an open connection. Returns the connection
    /// when it can be used again.
    // Long on purpose: MAIL, each RCPT, DATA and the end of data are the
    // steps of one RFC 5321 transaction, and each step's reply decides the
    // per-recipient results the next steps read.
    #[allow(clippy::too_many_lines)]
    async fn transaction(
        &mut self,
        job: &DeliveryJob,
        mut conn: Conn,
        size: usize,
        data: &[u8],
    ) -> Option<Conn> {
        let cfg = self.client.cfg.clone();
        let cmd_timeout = ms(cfg.command_timeout_ms);
        let host = conn.host.clone();
        let ip = conn.ip.to_string();
        // The session's level is established (open checked it before any
        // MAIL FROM): the protection header can say what it is.
        let stamped;
        let (size, data) = if job.protection_header {
            let field = protection::field_for(&conn);
            stamped = protection::stamp(&field, data);
            (size + field.len(), stamped.as_slice())
        } else {
            (size, data)
        };
        if job.smtputf8 && !conn.caps.smtputf8 {
            // RFC 6531 §3.4: without SMTPUTF8 at the server this cannot go.
            let reply = Reply::new(553, "5.6.7", format!("{host} does not support SMTPUTF8"));
            self.finish_all(&conn, Status::Bounced, &reply);
            return Some(conn);
        }
        if let Some(max) = conn.caps.size.filter(|&m| m > 0) {
            if size as u64 > max {
                let reply = Reply::new(
                    552,
                    "5.3.4",
                    format!("message of {size} octets exceeds {host}'s limit of {max}"),
                );
                self.finish_all(&conn, Status::Bounced, &reply);
                return Some(conn);
            }
        }
        let Some((mail, rcpts)) = self.envelope_commands(job, &conn.caps, size) else {
            return Some(conn);
        };
        // With PIPELINING, MAIL and all RCPTs go in one write (RFC 2920 §3.1).
        let replies = if conn.caps.pipelining {
            let mut batch = format!("{mail}\r\n");
            for r in &rcpts {
                batch.push_str(r);
                batch.push_str("\r\n");
            }
            if let Err(e) = conn.send(batch.as_bytes(), cmd_timeout).await {
                return self.lost(&conn, e);
            }
            let mut replies = Vec::with_capacity(rcpts.len() + 1);
            for stage in std::iter::once("MAIL FROM").chain(rcpts.iter().map(|_| "RCPT TO")) {
                match conn.read_reply(cmd_timeout, stage).await {
                    Ok(r) => replies.push(r),
                    Err(e) => return self.lost(&conn, e),
                }
            }
            replies
        } else {
            let mut replies = Vec::with_capacity(rcpts.len() + 1);
            match conn.command(&mail, cmd_timeout, "MAIL FROM").await {
                Ok(r) => replies.push(r),
                Err(e) => return self.lost(&conn, e),
            }
            if replies[0].is_positive() {
                for r in &rcpts {
                    match conn.command(r, cmd_timeout, "RCPT TO").await {
                        Ok(reply) => replies.push(reply),
                        Err(e) => return self.lost(&conn, e),
                    }
                }
            }
            replies
        };
        let mail_reply = replies[0].clone();
        if !mail_reply.is_positive() {
            if mail_reply.is_permanent() {
                self.finish_all(&conn, Status::Bounced, &mail_reply);
                conn.broken = conn.caps.pipelining && rset(&mut conn, cmd_timeout).await.is_err();
                return Some(conn);
            }
            // A transient MAIL refusal is about this server: the next host
            // may take the message.
            let err = conn.refused(Reason::ServerReply, "MAIL FROM", mail_reply);
            self.note(&host, &ip, &err);
            self.last_error = Some(err);
            let _ = rset(&mut conn, cmd_timeout).await;
            return Some(conn);
        }
        let mut accepted = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        for (rcpt, reply) in pending.into_iter().zip(replies.into_iter().skip(1)) {
            if reply.is_positive() {
                accepted.push(rcpt);
            } else {
                let status = if reply.is_permanent() {
                    Status::Bounced
                } else {
                    Status::Deferred
                };
                self.push_result(&conn, &rcpt, status, &reply);
            }
        }
        if accepted.is_empty() {
            let _ = rset(&mut conn, cmd_timeout).await;
            return Some(conn);
        }
        let data_reply = match conn
            .command("DATA", ms(cfg.data_init_timeout_ms), "DATA")
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.pending = accepted;
                return self.lost(&conn, e);
            }
        };
        if data_reply.code != 354 {
            let status = if data_reply.is_permanent() {
                Status::Bounced
            } else {
                Status::Deferred
            };
            for rcpt in &accepted {
                self.push_result(&conn, rcpt, status, &data_reply);
            }
            let _ = rset(&mut conn, cmd_timeout).await;
            return Some(conn);
        }
        if let Err(e) = send_data(&mut conn, data, ms(cfg.data_block_timeout_ms)).await {
            self.pending = accepted;
            return self.lost(&conn, e);
        }
        let final_reply = match conn
            .read_reply(ms(cfg.data_done_timeout_ms), "end of DATA")
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // RFC 5321 §6.1 allows a duplicate over a loss here; at-least-once.
                self.pending = accepted;
                return self.lost(&conn, e);
            }
        };
        let status = if final_reply.is_positive() {
            Status::Sent
        } else if final_reply.is_permanent() {
            Status::Bounced
        } else {
            Status::Deferred
        };
        for rcpt in &accepted {
            self.push_result(&conn, rcpt, status, &final_reply);
        }
        conn.messages += 1;
        Some(conn)
    }

    /// The connection failed mid-transaction: the pending recipients move on
    /// to the next host.
    fn lost(&mut self, conn: &Conn, e: ConnError) -> Option<Conn> {
        self.other_failure_seen = true;
        self.note(&conn.host, &conn.ip.to_string(), &e);
        self.last_error = Some(e);
        None
    }

    /// The MAIL command and one RCPT per pending recipient, written by the
    /// one writer (`envelope`, rule 12a). A recipient whose RCPT cannot be
    /// written safely, or every one when the MAIL cannot be, is bounced
    /// without anything being sent. None when nobody is left.
    fn envelope_commands(
        &mut self,
        job: &DeliveryJob,
        caps: &Caps,
        size: usize,
    ) -> Option<(String, Vec<String>)> {
        let mail = mail_command(job, caps, size);
        let mut rcpts = Vec::new();
        for rcpt in std::mem::take(&mut self.pending) {
            let (enhanced, text) = match (&mail, rcpt_command(&rcpt, caps, job.smtputf8)) {
                (Err(e), _) => ("5.1.7", format!("sender {e}")),
                (Ok(_), Err(e)) => ("5.1.3", format!("recipient {e}")),
                (Ok(_), Ok(cmd)) => {
                    rcpts.push(cmd);
                    self.pending.push(rcpt);
                    continue;
                }
            };
            let text =
                format!("not sent: {text}; it cannot be written safely on the wire (rule 12a)");
            self.results.push(RecipientResult {
                address: rcpt.address,
                status: Status::Bounced,
                code: 553,
                enhanced: enhanced.to_owned(),
                text,
                host: String::new(),
                ip: String::new(),
                tls: None,
                level: TlsLevel::None,
                unmet: false,
                reason: Some(Reason::LocalError),
            });
        }
        Some((mail.ok()?, rcpts)).filter(|(_, r)| !r.is_empty())
    }

    fn finish_all(&mut self, conn: &Conn, status: Status, reply: &Reply) {
        for rcpt in std::mem::take(&mut self.pending) {
            self.push_result(conn, &rcpt, status, reply);
        }
    }

    fn push_result(&mut self, conn: &Conn, rcpt: &Recipient, status: Status, reply: &Reply) {
        self.results.push(RecipientResult {
            address: rcpt.address.clone(),
            status,
            code: reply.code,
            enhanced: reply.enhanced.clone(),
            text: reply.text(),
            host: conn.host.clone(),
            ip: conn.ip.to_string(),
            tls: conn.tls.clone(),
            level: conn.level(),
            unmet: false,
            // The server's own reply, or (SMTPUTF8, SIZE) a limit it
            // announced: either way the server's answer.
            reason: (status != Status::Sent).then_some(Reason::ServerReply),
        });
    }

    /// Every recipient still without a result is deferred with the last
    /// reason seen; a permanent greeting refusal from every host bounces.
    fn defer_pending(&mut self, job: &DeliveryJob) {
        let ConnError {
            reason,
            text,
            reply,
            ..
        } = self.last_error.clone().unwrap_or_else(|| {
            ConnError::new(Reason::ConnectionFailed, "no host could be reached")
        });
        let _ = job;
        let unmet = self.unmet_seen && !self.other_failure_seen;
        for rcpt in std::mem::take(&mut self.pending) {
            let (code, enhanced) = if unmet {
                // RFC 3463 X.7.5: cryptographic failure, as Postfix says for
                // a TLS requirement it could not meet.
                (451, self.unmet_enhanced.unwrap_or("4.7.5").to_owned())
            } else {
                (
                    reply
                        .as_ref()
                        .map_or(451, |r| if r.is_transient() { r.code } else { 451 }),
                    reply
                        .as_ref()
                        .filter(|r| r.is_transient())
                        .map_or_else(|| "4.4.1".to_owned(), |r| r.enhanced.clone()),
                )
            };
            self.results.push(RecipientResult {
                address: rcpt.address,
                status: Status::Deferred,
                code,
                enhanced,
                text: text.clone(),
                host: String::new(),
                ip: String::new(),
                tls: None,
                level: TlsLevel::None,
                unmet,
                reason: Some(reason),
            });
        }
    }
}

async fn rset(conn: &mut Conn, timeout: Duration) -> Result<(), ConnError> {
    let reply = conn.command("RSET", timeout, "RSET").await?;
    if reply.is_positive() {
        Ok(())
    } else {
        conn.broken = true;
        Err(conn.refused(Reason::ServerReply, "RSET", reply))
    }
}

async fn send_data(conn: &mut Conn, data: &[u8], block_timeout: Duration) -> Result<(), ConnError> {
    // The data-block timeout (§4.5.3.2.5) applies to each write.
    for chunk in data.chunks(64 * 1024) {
        conn.send(chunk, block_timeout).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(protection_header: bool) -> DeliveryJob {
        serde_json::from_value(serde_json::json!({
            "job_id": 1, "queue_id": "Q", "destination": "example.test",
            "sender": "a@example.org", "recipients": [], "hosts": [],
            "tls": {"level": "encrypted"},
            "strip_headers": ["X-MXG-Risk"],
            "protection_header": protection_header,
        }))
        .unwrap()
    }

    #[test]
    fn the_protection_header_is_stripped_only_when_it_is_added() {
        assert_eq!(&*strip_list(&job(false)), ["X-MXG-Risk".to_owned()]);
        assert_eq!(
            &*strip_list(&job(true)),
            ["X-MXG-Risk".to_owned(), "X-MXG-Protection".to_owned()]
        );
        // A job from an older control plane has no such key: off.
        let old: DeliveryJob = serde_json::from_value(serde_json::json!({
            "job_id": 1, "queue_id": "Q", "destination": "d", "sender": "",
            "recipients": [], "hosts": [], "tls": {"level": "none"},
        }))
        .unwrap();
        assert!(!old.protection_header);
    }
}
