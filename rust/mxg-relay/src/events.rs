//! Events from the data plane to the control plane, and the bus that
//! batches them behind one readable file descriptor.
//!
//! The bus is a vector under a mutex plus a pipe. A producer writes one
//! byte to the pipe only when the vector goes from empty to non-empty, so
//! a burst of thousands of events costs one wake-up; the consumer empties
//! the pipe first and then takes the whole vector (see `drain` for why
//! that order loses no wake-up).

use crate::job::{AttemptNote, HostProbe, RecipientResult};
use mxg_spool::Envelope;
use serde::Serialize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A message is durable in the spool and was acknowledged with 250.
    /// `features` are what the content scanner found (for classification).
    Received {
        envelope: Envelope,
        features: serde_json::Value,
    },
    /// A message is durable in the spool and its session waits for a
    /// verdict (`Engine::verdicts`) before it answers the client.
    Arrived {
        envelope: Envelope,
        features: serde_json::Value,
    },
    /// A session asks whether a recipient is refused on the envelope alone
    /// (answered through `Engine::verdicts` under `check_id`).
    RcptCheck {
        check_id: String,
        sender: String,
        recipient: String,
    },
    /// A verdict refused a message in time: the client got this reply and
    /// the spool file is gone.
    Rejected {
        envelope: Envelope,
        code: u16,
        enhanced: String,
        text: String,
    },
    /// A delivery job finished; every recipient of the job has a result.
    DeliveryDone {
        job_id: u64,
        queue_id: String,
        destination: String,
        results: Vec<RecipientResult>,
        attempts: Vec<AttemptNote>,
        started_ms: u64,
        finished_ms: u64,
    },
    /// A probe (`mxg check`) finished.
    ProbeDone {
        probe_id: u64,
        domain: String,
        hosts: Vec<HostProbe>,
    },
    /// Something the operator should see that is not about one message,
    /// with structured fields (`client=…`) in the order given.
    Log {
        level: String,
        message: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fields: Vec<(String, String)>,
    },
}

impl Event {
    /// A log line without fields.
    pub fn log(level: &str, message: impl Into<String>) -> Self {
        Self::log_with(level, message, Vec::new())
    }

    /// A log line with fields, logged as `key=value` (text) or as keys of
    /// the JSON line.
    pub fn log_with(
        level: &str,
        message: impl Into<String>,
        fields: Vec<(String, String)>,
    ) -> Self {
        Self::Log {
            level: level.to_owned(),
            message: message.into(),
            fields,
        }
    }
}

pub struct EventBus {
    events: Mutex<Vec<Event>>,
    read_fd: OwnedFd,
    write_fd: OwnedFd,
    /// Received (or arrived) messages pushed since the last drain: how far
    /// the control plane is behind (inflow control, `inbound::Inflow`).
    undrained_messages: AtomicUsize,
    drained: Notify,
}

impl EventBus {
    pub fn new() -> std::io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read_fd, write_fd) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self {
            events: Mutex::new(Vec::new()),
            read_fd,
            write_fd,
            undrained_messages: AtomicUsize::new(0),
            drained: Notify::new(),
        })
    }

    /// The descriptor that becomes readable when events are waiting.
    pub fn fd(&self) -> RawFd {
        self.read_fd.as_raw_fd()
    }

    pub fn push(&self, event: Event) {
        let message = matches!(event, Event::Received { .. } | Event::Arrived { .. });
        let was_empty = {
            let mut events = self.events.lock().expect("event bus poisoned");
            if message {
                // Under the lock: `drain` zeroes the count as it takes.
                self.undrained_messages.fetch_add(1, Ordering::Relaxed);
            }
            events.push(event);
            events.len() == 1
        };
        if was_empty {
            self.wake();
        }
    }

    fn wake(&self) {
        let byte = 1u8;
        // SAFETY: writing one byte from a valid buffer to our own pipe. A
        // full pipe (EAGAIN) already means "readable", so errors are moot.
        unsafe {
            libc::write(
                self.write_fd.as_raw_fd(),
                std::ptr::from_ref(&byte).cast(),
                1,
            );
        }
    }

    /// Takes every waiting event. The pipe is emptied before the vector is
    /// taken: an event pushed in between is either taken now or finds the
    /// vector empty and writes a fresh byte, so no event waits unseen.
    pub fn drain(&self) -> Vec<Event> {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reading into a stack buffer of the stated length.
            let n =
                unsafe { libc::read(self.read_fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        }
        let events = {
            let mut waiting = self.events.lock().expect("event bus poisoned");
            self.undrained_messages.store(0, Ordering::Relaxed);
            std::mem::take(&mut *waiting)
        };
        self.drained.notify_waiters();
        events
    }

    /// Messages pushed since the last drain.
    pub fn undrained_messages(&self) -> usize {
        self.undrained_messages.load(Ordering::Relaxed)
    }

    /// Completes at the next drain.
    pub fn drained(&self) -> tokio::sync::futures::Notified<'_> {
        self.drained.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&raw mut pfd, 1, 0) == 1 }
    }

    #[test]
    fn one_wakeup_per_batch_and_nothing_lost() {
        let bus = EventBus::new().unwrap();
        assert!(!readable(bus.fd()));
        for i in 0..1000 {
            bus.push(Event::log("info", i.to_string()));
        }
        assert!(readable(bus.fd()));
        assert_eq!(bus.drain().len(), 1000);
        assert!(!readable(bus.fd()));
        bus.push(Event::log("info", "again"));
        assert!(readable(bus.fd()));
        assert_eq!(bus.drain().len(), 1);
    }
}
