//! One inbound SMTP session (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
//! SMTPUTF8, ENHANCEDSTATUSCODES, DSN, STARTTLS and CHUNKING).

use super::admission::Place;
use super::budget::Share;
use super::intake::Gate;
use super::listener::ServerShared;
use super::refusal::{self, Refusal};
use super::trace::{count_received, message_id, received_header, TraceInfo};
use super::verdict::Verdict;
use crate::events::Event;
use crate::stream::Stream;
use mxg_smtp::command::Framed;
use mxg_smtp::data::check_line_ends;
use mxg_smtp::{
    parse_command, Bdat, BdatReader, Command, DataProgress, DataReader, LineFramer, MailArgs,
    RcptArgs, Reply,
};
use mxg_spool::{new_queue_id, Envelope, Recipient, Reserved};
use smtp_proto::Request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 5321 §6.3: more Received fields than this means a mail loop.
const MAX_HOPS: usize = 100;
/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_mins(1);

/// What the session does after a command.
enum Flow {
    Continue,
    Close,
}

/// The transaction started by MAIL.
struct Transaction {
    sender: String,
    ret: Option<String>,
    envid: Option<String>,
    body: Option<String>,
    smtputf8: bool,
    requiretls: bool,
    recipients: Vec<Recipient>,
    /// The BDAT chunks gathered so far.
    bdat: Option<Chunks>,
}

/// A message arriving in BDAT chunks (RFC 3030), between its chunks.
struct Chunks {
    reader: BdatReader,
    /// The chunks' part of the sessions' memory budget (rule 12b).
    share: Share,
    /// Its place in the content phase (`Admission`).
    place: Option<Place>,
}

pub struct Session {
    shared: Arc<ServerShared>,
    stream: Stream,
    peer: SocketAddr,
    framer: LineFramer,
    out: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<String>,
    txn: Option<Transaction>,
    errors: usize,
    may_relay: bool,
    /// The spool file the next message goes into (`Spool::reserve_ready`).
    reserved: Option<Reserved>,
}

/// Reading from the client failed or timed out: the session just ends.
struct Gone;

impl Session {
    pub fn new(shared: Arc<ServerShared>, stream: TcpStream, peer: SocketAddr) -> Self {
        let may_relay = shared.may_relay(peer.ip());
        let max_line = shared.limits.max_command_line;
        Self {
            shared,
            stream: Stream::Plain(stream),
            peer,
            framer: LineFramer::new(max_line),
            out: Vec::with_capacity(1024),
            helo: None,
            esmtp: false,
            tls: None,
            txn: None,
            reserved: None,
            errors: 0,
            may_relay,
        }
    }

    fn reply(&mut self, reply: &Reply) {
        if reply.code >= 400 {
            self.errors += 1;
        }
        self.out.extend_from_slice(&reply.to_wire());
    }

    async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.shared.limits.command_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }

    /// Reads more bytes from the client into `buf`; `Gone` on EOF, error or
    /// timeout.
    async fn read_some(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, Gone> {
        match tokio::time::timeout(timeout, self.stream.read(buf)).await {
            Ok(Ok(n)) if n > 0 => Ok(n),
            _ => Err(Gone),
        }
    }

    pub async fn run(mut self) {
        let greeting = Reply::new(220, "", format!("{} ESMTP mxg", self.shared.hostname));
        self.out.extend_from_slice(&greeting.to_wire());
        let _ = self.serve().await;
        if let Some(reserved) = self.reserved.take() {
            self.shared.spool.release(reserved);
        }
        let _ = self.stream.shutdown().await;
    }

    async fn serve(&mut self) -> Result<(), Gone> {
        let mut buf = vec![0u8; 32 * 1024];
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            while let Some(framed) = self.framer.next_line() {
                let flow = match framed {
                    Framed::TooLong => {
                        self.refusal(
                            Refusal::ProtocolError,
                            &Reply::new(500, "5.5.2", "Line too long"),
                        );
                        Flow::Continue
                    }
                    Framed::Line(line) => self.command(&line).await?,
                };
                if matches!(flow, Flow::Close) {
                    return self.flush().await;
                }
                if self.errors > self.shared.limits.max_errors {
                    self.refusal(
                        Refusal::TooManyErrors,
                        &Reply::new(421, "4.7.0", "Too many errors, closing connection"),
                    );
                    return self.flush().await;
                }
            }
            self.flush().await?;
            if *shutdown.borrow() && self.txn.is_none() {
                return self.closing().await;
            }
            let timeout = self.shared.limits.command_timeout;
            let n = tokio::select! {
                n = self.read_some(&mut buf, timeout) => n?,
                _ = shutdown.changed(), if self.txn.is_none() => return self.closing().await,
            };
            self.framer.push(&buf[..n]);
        }
    }

    async fn closing(&mut self) -> Result<(), Gone> {
        let text = format!(
            "{} Service shutting down, try again later",
            self.shared.hostname
        );
        self.reply(&Reply::new(421, "4.3.2", text));
        self.flush().await
    }

    async fn command(&mut self, line: &[u8]) -> Result<Flow, Gone> {
        let cmd = match parse_command(line) {
            Ok(Command::Other(cmd)) => cmd,
            Ok(Command::Mail(from)) => {
                match self.shared.intake.at_mail(&self.shared.hostname) {
                    None => {}
                    Some(Gate::Defer(reply)) => {
                        self.refusal(Refusal::Storage, &reply);
                        return Ok(Flow::Continue);
                    }
                    Some(Gate::Close(reply)) => {
                        self.reply(&reply);
                        return Ok(Flow::Close);
                    }
                }
                self.inflow_pause().await?;
                self.reserve_spool_file().await;
                self.mail(from);
                return Ok(Flow::Continue);
            }
            Ok(Command::Rcpt(to)) => {
                self.rcpt(to).await;
                return Ok(Flow::Continue);
            }
            Ok(Command::Bdat(bdat)) => return self.bdat(bdat).await,
            Err(e) => {
                self.refusal(Refusal::ProtocolError, &e.reply);
                return Ok(Flow::Continue);
            }
        };
        match cmd {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Lhlo { .. } => self.refusal(
                Refusal::ProtocolError,
                &Reply::new(500, "5.5.1", "This is SMTP, not LMTP"),
            ),
            Request::Data => return self.data().await,
            Request::Rset => {
                self.txn = None;
                self.reply(&Reply::new(250, "2.0.0", "Ok"));
            }
            Request::Noop { .. } => self.reply(&Reply::new(250, "2.0.0", "Ok")),
            Request::Vrfy { .. } => self.reply(&Reply::new(
                252,
                "2.5.2",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Help { .. } => self.reply(&Reply::new(
                214,
                "2.0.0",
                "mxg outbound gateway: see RFC 5321; commands EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY STARTTLS QUIT",
            )),
            Request::Quit => {
                self.reply(&Reply::new(221, "2.0.0", "Bye"));
                return Ok(Flow::Close);
            }
            Request::StartTls => return self.starttls().await,
            other => self.not_implemented(&other),
        }
        Ok(Flow::Continue)
    }

    fn not_implemented(&mut self, cmd: &Request<String>) {
        let text = format!("{} not implemented", cmd.name());
        self.refusal(Refusal::ProtocolError, &Reply::new(502, "5.5.1", text));
    }

    fn ehlo(&mut self, host: String, esmtp: bool) {
        self.txn = None;
        self.helo = Some(host);
        self.esmtp = esmtp;
        let name = self.shared.hostname.clone();
        if !esmtp {
            self.reply(&Reply::new(250, "", name));
            return;
        }
        let mut lines = vec![
            name,
            "PIPELINING".into(),
            format!("SIZE {}", self.shared.limits.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "DSN".into(),
            "CHUNKING".into(),
        ];
        if self.shared.tls.is_some() && !self.stream.is_tls() {
            lines.push("STARTTLS".into());
        }
        // RFC 8689 §4.1: offered only within a TLS session.
        if self.stream.is_tls() {
            lines.push("REQUIRETLS".into());
        }
        self.reply(&Reply::multi(250, lines));
    }

    /// Inflow control before a new transaction (`Inflow`). Replies already
    /// due, such as the 250 for a message whose MAIL the client pipelined
    /// right behind it, go out before the pause.
    async fn inflow_pause(&mut self) -> Result<(), Gone> {
        let Some(inflow) = self.shared.inflow else {
            return Ok(());
        };
        if inflow.is_behind(&self.shared.bus) {
            self.flush().await?;
            inflow.pause(&self.shared.bus).await;
        }
        Ok(())
    }

    /// Waits for a place in the content phase (`Admission`). Replies
    /// already due go out first, so the client is not kept waiting for them.
    async fn enter_content(&mut self) -> Result<Option<Place>, Gone> {
        let Some(admission) = self.shared.admission.clone() else {
            return Ok(None);
        };
        if admission.free() == 0 {
            self.flush().await?;
        }
        Ok(Some(admission.enter().await))
    }

    /// Sets a spool file aside for the coming message (`Reserved`): one of
    /// the pool's ready files, or, when the pool is empty, a new one made on
    /// the blocking pool. A failure here only means the group commit makes
    /// the file (and reports what went wrong) as before.
    async fn reserve_spool_file(&mut self) {
        if self.reserved.is_some() {
            return;
        }
        self.reserved = self.shared.spool.reserve_ready();
        if self.reserved.is_none() {
            let spool = self.shared.spool.clone();
            self.reserved = tokio::task::spawn_blocking(move || spool.reserve_new().ok())
                .await
                .ok()
                .flatten();
        }
    }

    fn mail(&mut self, from: MailArgs) {
        if self.helo.is_none() {
            return self.refusal(
                Refusal::ProtocolError,
                &Reply::new(503, "5.5.1", "Send EHLO or HELO first"),
            );
        }
        if self.txn.is_some() {
            return self.refusal(
                Refusal::ProtocolError,
                &Reply::new(503, "5.5.1", "Nested MAIL command"),
            );
        }
        if from
            .size
            .is_some_and(|n| n > self.shared.limits.max_message_size as u64)
        {
            return self.refusal(Refusal::Size, &too_big(self.shared.limits.max_message_size));
        }
        let smtputf8 = from.smtputf8;
        // RFC 6531 §3.7.4.1: 553 5.6.7 for an 8-bit address without
        // SMTPUTF8 (invalid UTF-8 never got this far, see mxg_smtp).
        if !smtputf8 && !from.address.is_ascii() {
            return self.refusal(
                Refusal::ProtocolError,
                &Reply::new(553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8"),
            );
        }
        let requiretls = from.requiretls;
        if requiretls && !self.stream.is_tls() {
            // RFC 8689 §4.1: REQUIRETLS only over TLS; we never offered it.
            return self.refusal(
                Refusal::ProtocolError,
                &Reply::new(
                    530,
                    "5.7.10",
                    "REQUIRETLS needs a TLS session: use STARTTLS first (RFC 8689 4.1)",
                ),
            );
        }
        self.txn = Some(Transaction {
            sender: from.address,
            ret: from.ret.map(str::to_owned),
            envid: from.envid,
            body: from.body.map(str::to_owned),
            smtputf8,
            requiretls,
            recipients: Vec::new(),
            bdat: None,
        });
        self.reply(&Reply::new(250, "2.1.0", "Ok"));
    }

    async fn rcpt(&mut self, to: RcptArgs) {
        let Some(txn) = self.txn.as_mut() else {
            return self.refusal(
                Refusal::ProtocolError,
                &Reply::new(503, "5.5.1", "Need MAIL before RCPT"),
            );
        };
        if !self.may_relay {
            let text = format!(
                "<{}>: Relay access denied: client {} is not in client_networks",
                to.address,
                self.peer.ip()
            );
            return self.refusal(Refusal::RelayDenied, &Reply::new(554, "5.7.1", text));
        }
        if txn.recipients.len() >= self.shared.limits.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452 lets the client send the rest later.
            return self.refusal(
                Refusal::TooManyRecipients,
                &Reply::new(452, "4.5.3", "Too many recipients"),
            );
        }
        // The address has a domain and no unsafe character: mxg_smtp read
        // it exactly or refused it (rule 12a).
        if !txn.smtputf8 && !to.address.is_ascii() {
            return self.refusal(
                Refusal::ProtocolError,
                &Reply::new(553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8"),
            );
        }
        let notify = to.notify.iter().map(|&w| w.to_owned()).collect();
        let sender = txn.sender.clone();
        if let Some(refusal) = self.rcpt_verdict(&sender, &to.address).await {
            // Logged by the control plane ("recipient refused"); counted here.
            self.shared.stats.refused(Refusal::Policy);
            return self.reply(&refusal);
        }
        let Some(txn) = self.txn.as_mut() else {
            return self.reply(&Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        txn.recipients.push(Recipient {
            address: to.address,
            notify,
            orcpt: to.orcpt,
        });
        self.reply(&Reply::new(250, "2.1.5", "Ok"));
    }

    fn ready_for_body(&mut self) -> bool {
        match &self.txn {
            None => self.refusal(
                Refusal::ProtocolError,
                &Reply::new(503, "5.5.1", "Need MAIL command"),
            ),
            Some(t) if t.recipients.is_empty() => {
                self.refusal(
                    Refusal::ProtocolError,
                    &Reply::new(554, "5.5.1", "No valid recipients"),
                );
            }
            Some(_) => return true,
        }
        false
    }

    async fn data(&mut self) -> Result<Flow, Gone> {
        if self.txn.as_ref().is_some_and(|t| t.bdat.is_some()) {
            self.refusal(
                Refusal::ProtocolError,
                &Reply::new(503, "5.5.1", "DATA not allowed after BDAT"),
            );
            return Ok(Flow::Continue);
        }
        if !self.ready_for_body() {
            return Ok(Flow::Continue);
        }
        // Held until the message is answered, then given back.
        let _place = self.enter_content().await?;
        self.reply(&Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.flush().await?;
        let limits = self.shared.limits.clone();
        let mut reader = DataReader::new(limits.max_data_line, limits.max_message_size);
        let mut share = Share::new(self.shared.memory.clone());
        let mut pending = self.framer.take_buffered();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let progress = reader.feed(&pending);
            if !reader.discarding && !share.grow_to(reader.held()) {
                // Rule 12b: the sessions hold all the budget allows; this
                // message is read to its end and refused with 452.
                reader.discard();
            }
            match progress {
                DataProgress::NeedMore => {
                    let n = self.read_some(&mut buf, limits.data_timeout).await?;
                    pending.clear();
                    pending.extend_from_slice(&buf[..n]);
                }
                DataProgress::Done { consumed } => {
                    self.framer.push(&pending[consumed..]);
                    break;
                }
                DataProgress::Failed(err) => {
                    // After a bare CR or LF nobody knows where DATA ends:
                    // refuse the message and close (see mxg_smtp::data).
                    self.txn = None;
                    let text = format!(
                        "Message refused: {err}; only <CR><LF> line ends are allowed (RFC 5321 2.3.8), closing connection"
                    );
                    self.refusal(Refusal::ProtocolError, &Reply::new(554, "5.5.2", text));
                    return Ok(Flow::Close);
                }
            }
        }
        if reader.oversize {
            return Ok(self.refuse(Refusal::Size, &too_big(limits.max_message_size)));
        }
        if reader.discarding {
            return Ok(self.refuse(Refusal::Memory, &out_of_memory()));
        }
        if reader.line_too_long() {
            return Ok(self.refuse(Refusal::ProtocolError, &line_too_long(limits.max_data_line)));
        }
        let body = reader.into_body();
        self.accept(body, share).await
    }

    /// A BDAT whose chunk size could not be read (not a number, or more
    /// than a u64 holds). RFC 3030 §2 has the client send the chunk right
    /// behind the command without waiting for a reply, so its octets are
    /// already on the way; without their count nobody can say where the
    /// chunk ends and the next command begins, and reading on as commands
    /// would run message text as SMTP (smtp-proto 0.2.5 read
    /// `BDAT 99999999999999999999999 LAST` as `BDAT 999 LAST`). So the
    /// refusal is followed by 421 and the connection is closed.
    fn bdat_lost(&mut self, reply: &Reply) -> Flow {
        self.txn = None;
        self.refusal(Refusal::ProtocolError, reply);
        self.reply(&Reply::new(
            421,
            "4.7.0",
            format!(
                "{} Cannot tell where the BDAT chunk ends, closing connection (RFC 3030 2)",
                self.shared.hostname
            ),
        ));
        Flow::Close
    }

    /// Reads a chunk of `size` octets off the wire; every size that was
    /// read as a number is read past in full, so the session stays in step
    /// with the client (RFC 3030 §3) however the chunk is answered.
    async fn read_chunk(
        &mut self,
        reader: &mut BdatReader,
        share: &mut Share,
        size: u64,
    ) -> Result<(), Gone> {
        let limits = self.shared.limits.clone();
        reader.begin_chunk(size, limits.max_message_size);
        let mut pending = self.framer.take_buffered();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let used = reader.feed(&pending);
            if !reader.is_discarding() && !share.grow_to(reader.body().len()) {
                reader.discard(); // rule 12b, as for DATA
            }
            if reader.chunk_done() {
                self.framer.push(&pending[used..]);
                return Ok(());
            }
            let n = self.read_some(&mut buf, limits.data_timeout).await?;
            pending.clear();
            pending.extend_from_slice(&buf[..n]);
        }
    }

    async fn bdat(&mut self, bdat: Bdat) -> Result<Flow, Gone> {
        let (size, last) = match bdat {
            Bdat::Chunk { size, last } => (size, last),
            Bdat::Lost(reply) => return Ok(self.bdat_lost(&reply)),
            Bdat::Bad { size, reply } => {
                let mut share = Share::new(self.shared.memory.clone());
                self.read_chunk(&mut BdatReader::discarding(), &mut share, size)
                    .await?;
                return Ok(self.refuse(Refusal::ProtocolError, &reply));
            }
        };
        let body_started = self.txn.as_ref().is_some_and(|t| t.bdat.is_some());
        let ok = body_started || self.ready_for_body();
        // The chunk must be read off the wire even when it is refused, or
        // its bytes would be taken for commands (RFC 3030 §3); one without
        // a transaction to go to is read without keeping a byte of it
        // (rule 12b: before MAIL and RCPT nothing is held).
        let started = self.txn.as_mut().and_then(|t| t.bdat.take());
        let Chunks {
            mut reader,
            mut share,
            place,
        } = match started {
            Some(chunks) => chunks,
            None => Chunks {
                reader: if ok {
                    BdatReader::default()
                } else {
                    BdatReader::discarding()
                },
                share: Share::new(self.shared.memory.clone()),
                // Only a message that will be kept waits for a place.
                place: if ok {
                    self.enter_content().await?
                } else {
                    None
                },
            },
        };
        let limits = self.shared.limits.clone();
        self.read_chunk(&mut reader, &mut share, size).await?;
        if !ok {
            return Ok(Flow::Continue);
        }
        if reader.oversize || reader.is_discarding() {
            // Refused at the chunk that passed the limit or the budget;
            // later chunks of the same message are read past and refused
            // too, until LAST. Counted and logged once, at the LAST chunk.
            let (why, reply) = if reader.oversize {
                (Refusal::Size, too_big(limits.max_message_size))
            } else {
                (Refusal::Memory, out_of_memory())
            };
            if last {
                self.refusal(why, &reply);
            } else {
                self.reply(&reply);
            }
            if last {
                self.txn = None;
            } else if let Some(t) = self.txn.as_mut() {
                t.bdat = Some(Chunks {
                    reader,
                    share,
                    place,
                });
            }
            return Ok(Flow::Continue);
        }
        if !last {
            let text = format!("{size} octets received");
            if let Some(t) = self.txn.as_mut() {
                t.bdat = Some(Chunks {
                    reader,
                    share,
                    place,
                });
            }
            self.reply(&Reply::new(250, "2.0.0", text));
            return Ok(Flow::Continue);
        }
        let body = reader.into_body();
        match check_line_ends(&body) {
            Err(err) => {
                let text = format!(
                    "Message refused: {err}; only <CR><LF> line ends are allowed (RFC 5321 2.3.8)"
                );
                Ok(self.refuse(Refusal::ProtocolError, &Reply::new(554, "5.6.0", text)))
            }
            Ok(longest) if longest > limits.max_data_line => {
                Ok(self.refuse(Refusal::ProtocolError, &line_too_long(limits.max_data_line)))
            }
            Ok(_) => self.accept(body, share).await,
        }
    }

    /// Stores the message and answers 250 only once it is on disk.
    /// `share` is the message's part of the sessions' memory budget; it
    /// goes back once the message is stored and scanned.
    async fn accept(&mut self, body: Vec<u8>, share: Share) -> Result<Flow, Gone> {
        let Some(txn) = self.txn.take() else {
            return Ok(Flow::Continue);
        };
        if count_received(&body) > MAX_HOPS {
            let text = format!("Too many hops: more than {MAX_HOPS} Received fields, mail loop?");
            self.refusal(Refusal::Loop, &Reply::new(554, "5.4.6", text));
            return Ok(Flow::Continue);
        }
        let queue_id = new_queue_id();
        let now = SystemTime::now();
        let client_ip = self.peer.ip().to_string();
        let helo = self.helo.clone().unwrap_or_default();
        let protocol = match (self.esmtp, self.stream.is_tls()) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "ESMTPS",
        };
        let single = (txn.recipients.len() == 1).then(|| txn.recipients[0].address.as_str());
        let trace = received_header(
            &TraceInfo {
                helo: &helo,
                client_ip: &client_ip,
                hostname: &self.shared.hostname,
                protocol,
                queue_id: &queue_id,
                tls: self.tls.as_deref(),
                single_recipient: single,
            },
            now,
        );
        // The body is held once: shared by the spool's writer and the
        // scanner, not copied for either (rule 12b).
        let body = Arc::new(body);
        let envelope = Envelope {
            queue_id: queue_id.clone(),
            received_ms: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            sender: txn.sender,
            recipients: txn.recipients,
            ret: txn.ret,
            envid: txn.envid,
            body: txn.body,
            smtputf8: txn.smtputf8,
            requiretls: txn.requiretls,
            origin: "smtp".into(),
            client_addr: client_ip,
            client_helo: helo,
            client_tls: self.tls.clone(),
            size: (trace.len() + body.len()) as u64,
            message_id: message_id(&body),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.spool.commit_shared(
            self.reserved.take(),
            &envelope,
            trace.as_bytes(),
            body.clone(),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        // Scanned while the spool's group commit syncs the message.
        let features = self.features(body).await;
        match rx.await {
            Ok(Ok(())) => self.answer(envelope, features).await,
            Ok(Err(e)) => {
                // RFC 5321 §4.2.3 452 and RFC 3463 4.3.1 for a full disk:
                // the client keeps the message and tries again later.
                let reply = if e.is_out_of_space() {
                    Reply::new(452, "4.3.1", "Insufficient system storage, try again later")
                } else {
                    Reply::new(
                        451,
                        "4.3.0",
                        "Local error: message not stored, try again later",
                    )
                };
                self.refusal_because(
                    Refusal::Storage,
                    &reply,
                    Some(format!("cannot spool message: {e}")),
                );
            }
            Err(_) => {
                self.refusal(
                    Refusal::Storage,
                    &Reply::new(
                        451,
                        "4.3.0",
                        "Local error: spool unavailable, try again later",
                    ),
                );
            }
        }
        // Stored (or refused) and scanned: the body's memory is free.
        drop(share);
        Ok(Flow::Continue)
    }

    /// With RCPT-time checks on (rules that decide on the envelope alone
    /// may refuse), asks the control plane about one recipient; a refusal
    /// is per recipient, so the others of the message still go (issue 4).
    /// No answer within the deadline means accept.
    async fn rcpt_verdict(&self, sender: &str, recipient: &str) -> Option<Reply> {
        let deadline = self
            .shared
            .verdict_deadline
            .filter(|_| self.shared.rcpt_checks)?;
        let check_id = format!("rcpt-{}", new_queue_id());
        let rx = self.shared.verdicts.register(&check_id);
        self.shared.bus.push(Event::RcptCheck {
            check_id: check_id.clone(),
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
        });
        let verdict = self.shared.verdicts.wait(&check_id, rx, deadline).await?;
        verdict.reject.map(|r| r.to_reply())
    }

    /// What the content scanner finds in the message as the client sent
    /// it. Large messages are scanned off the async workers: a scan is
    /// linear in the text but a big one takes milliseconds.
    async fn features(&self, body: Arc<Vec<u8>>) -> serde_json::Value {
        /// Below this a scan takes microseconds; not worth a thread hop.
        const INLINE_SCAN: usize = 256 * 1024;
        let Some(scanner) = self.shared.scanner.clone() else {
            return serde_json::Value::Null;
        };
        let features = if body.len() <= INLINE_SCAN {
            scanner.scan(&body)
        } else {
            match tokio::task::spawn_blocking(move || scanner.scan(&body)).await {
                Ok(f) => f,
                Err(_) => return serde_json::Value::Null,
            }
        };
        serde_json::to_value(features).unwrap_or(serde_json::Value::Null)
    }

    /// The message is on disk: with synchronous verdicts the control plane
    /// may still refuse it (the spool file goes, the client gets the 5xx);
    /// otherwise, or past the deadline, it is accepted with 250. On a
    /// PostgreSQL store (`store_ack`) every message waits for the control
    /// plane instead (`answer_stored`).
    async fn answer(&mut self, envelope: Envelope, features: serde_json::Value) {
        if let Some(wait) = self.shared.store_ack {
            return self.answer_stored(envelope, features, wait).await;
        }
        let queue_id = envelope.queue_id.clone();
        let deadline = self.shared.verdict_deadline.filter(|_| {
            self.shared
                .verdict_screen
                .as_ref()
                .is_none_or(|screen| screen.needs_verdict(&features))
        });
        if let Some(deadline) = deadline {
            let verdict = self.ask(&envelope, &features, deadline).await;
            if let Some(reject) = verdict.and_then(|v| v.reject) {
                match self.discard(&queue_id).await {
                    Ok(()) => return self.rejected(envelope, &reject.to_reply()),
                    // The message stays and is accepted: refusing it while
                    // a copy remains would deliver what the client bounced.
                    Err(e) => self.shared.bus.push(Event::log(
                        "error",
                        format!("cannot remove refused message {queue_id}: {e}; accepting it"),
                    )),
                }
            }
        }
        self.shared.bus.push(Event::Received { envelope, features });
        self.queued(&queue_id);
    }

    /// `answer` on a PostgreSQL store: the 250 only once the control plane
    /// has committed the message with its spool file's bytes ("stored"),
    /// so that an acknowledged message outlives this node (docs/cluster.md,
    /// "Bodies before the 250"). Anything else leaves the message with the
    /// client: the spool file goes and the client gets a 4xx (or the 5xx
    /// of a refusing class). A spool file that cannot be removed stays
    /// unacknowledged; recovery on PostgreSQL removes what the store does
    /// not know.
    async fn answer_stored(
        &mut self,
        envelope: Envelope,
        features: serde_json::Value,
        wait: Duration,
    ) {
        let queue_id = envelope.queue_id.clone();
        let verdict = self.ask(&envelope, &features, wait).await;
        if verdict.as_ref().is_some_and(|v| v.stored) {
            return self.queued(&queue_id);
        }
        let (reply, why) = match verdict {
            Some(Verdict {
                reject: Some(reject),
                ..
            }) => (reject.to_reply(), None),
            Some(Verdict {
                defer: Some(defer), ..
            }) => (defer.to_reply(), None),
            Some(_) => (
                not_stored(),
                Some("the control plane neither stored nor refused it".to_owned()),
            ),
            None => (
                not_stored(),
                Some(format!("not stored within {} ms", wait.as_millis())),
            ),
        };
        let removed = self.discard(&queue_id).await;
        if let Err(e) = &removed {
            self.shared.bus.push(Event::log(
                "error",
                format!("cannot remove unacknowledged message {queue_id}: {e}"),
            ));
        }
        if reply.code >= 500 && removed.is_ok() {
            return self.rejected(envelope, &reply);
        }
        if reply.code >= 500 {
            // Refused, but a copy remains: a transient answer instead, so
            // the client neither bounces a message that might still go
            // nor loses one (recovery removes the unstored copy).
            return self.refusal(Refusal::Storage, &not_stored());
        }
        let detail = why.map(|w| format!("message {queue_id} {w}"));
        self.refusal_because(Refusal::Storage, &reply, detail);
    }

    /// Tells the control plane about a stored message (`Arrived`) and
    /// waits up to `deadline` for its verdict.
    async fn ask(
        &self,
        envelope: &Envelope,
        features: &serde_json::Value,
        deadline: Duration,
    ) -> Option<Verdict> {
        let queue_id = envelope.queue_id.as_str();
        let rx = self.shared.verdicts.register(queue_id);
        self.shared.bus.push(Event::Arrived {
            envelope: envelope.clone(),
            features: features.clone(),
        });
        self.shared.verdicts.wait(queue_id, rx, deadline).await
    }

    /// Removes the spool file of a message that gets no 250.
    async fn discard(&self, queue_id: &str) -> Result<(), String> {
        let spool = self.shared.spool.clone();
        let id = queue_id.to_owned();
        match tokio::task::spawn_blocking(move || spool.remove(&id)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A message refused by a class's policy, its spool file gone.
    fn rejected(&mut self, envelope: Envelope, reply: &Reply) {
        // Logged by the control plane ("rejected", with the queue id and
        // the client); only counted here.
        self.shared.stats.refused(Refusal::Policy);
        self.reply(reply);
        self.shared.bus.push(Event::Rejected {
            envelope,
            code: reply.code,
            enhanced: reply.enhanced.clone(),
            text: reply.text(),
        });
    }

    fn queued(&mut self, queue_id: &str) {
        let text = format!("Ok: queued as {queue_id}");
        self.reply(&Reply::new(250, "2.0.0", text));
    }

    async fn starttls(&mut self) -> Result<Flow, Gone> {
        let Some(config) = self.shared.tls.clone() else {
            self.refusal(
                Refusal::ProtocolError,
                &Reply::new(502, "5.5.1", "STARTTLS not available"),
            );
            return Ok(Flow::Continue);
        };
        if self.stream.is_tls() {
            self.refusal(
                Refusal::ProtocolError,
                &Reply::new(503, "5.5.1", "TLS already active"),
            );
            return Ok(Flow::Continue);
        }
        self.reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.flush().await?;
        // RFC 3207 §4.2 / ARCHITECTURE.md rule 6: anything the client sent
        // after STARTTLS and before the handshake is an injection attempt.
        self.framer.discard_buffered();
        let plain = self.stream.take_plain().ok_or(Gone)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => tls,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()),
                };
                refusal::note(
                    &self.shared.bus,
                    &self.shared.stats,
                    Refusal::TlsFailure,
                    self.peer,
                    None,
                    Some(error),
                );
                return Ok(Flow::Close);
            }
        };
        self.tls =
            crate::tls::describe(tls.get_ref().1).map(|t| format!("{} {}", t.version, t.cipher));
        self.stream = Stream::ServerTls(Box::new(tls));
        // Forget everything the client said before TLS (RFC 3207 §4.2).
        self.helo = None;
        self.esmtp = false;
        self.txn = None;
        Ok(Flow::Continue)
    }
}

impl Session {
    /// Ends the transaction with a refusal; the session goes on.
    fn refuse(&mut self, why: Refusal, reply: &Reply) -> Flow {
        self.txn = None;
        self.refusal(why, reply);
        Flow::Continue
    }

    /// Answers with a refusal, counted and logged with the client's
    /// address (`refusal::note`).
    fn refusal(&mut self, why: Refusal, reply: &Reply) {
        self.refusal_because(why, reply, None);
    }

    /// `refusal`, with what the reply does not tell the client.
    fn refusal_because(&mut self, why: Refusal, reply: &Reply, detail: Option<String>) {
        let (bus, stats) = (&self.shared.bus, &self.shared.stats);
        refusal::note(bus, stats, why, self.peer, Some(reply), detail);
        if why == Refusal::Storage {
            // Our fault, not the client's (a full disk, the store down):
            // not counted against `max_errors`, or a client would be cut
            // off for retrying politely through an outage.
            self.out.extend_from_slice(&reply.to_wire());
        } else {
            self.reply(reply);
        }
    }
}

/// Rule 12b: the sessions already hold all the message octets the budget
/// allows (RFC 3463 4.3.1, mail system full); the client tries later.
fn out_of_memory() -> Reply {
    Reply::new(
        452,
        "4.3.1",
        "Insufficient system storage: too much mail in progress, try again later",
    )
}

/// RFC 3463 4.3.0: the message was not stored where the 250 needs it
/// (on a PostgreSQL store); the client keeps it and tries again.
fn not_stored() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "Local error: message not stored, try again later",
    )
}

fn too_big(max: usize) -> Reply {
    let text = format!("Message size exceeds the limit of {max} octets");
    Reply::new(552, "5.3.4", text)
}

fn line_too_long(max: usize) -> Reply {
    let text = format!("Message has a line longer than {max} octets (RFC 5321 4.5.3.1.6)");
    Reply::new(554, "5.6.0", text)
}
