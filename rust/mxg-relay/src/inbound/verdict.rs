//! Synchronous verdicts at the end of DATA (issue 4, ARCHITECTURE.md, vocabulary
//! `on_unmet = reject`).
//!
//! A session with a stored message registers its queue id here, tells the
//! control plane (event `Arrived`) and waits up to the configured deadline.
//! The control plane answers through [`Verdicts::give`]. Exactly one of
//! "the verdict arrived" and "the deadline passed" wins, decided under one
//! lock: a verdict that comes too late is refused (`give` returns false),
//! so the control plane knows the message was accepted with 250 after all
//! and handles it asynchronously.

use mxg_smtp::Reply;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// Which messages wait for a verdict. The control plane sends one when the
/// only way into a class that refuses is the marker header (no rule leads
/// there, and the default class does not refuse): then a message whose
/// marker names no such class is accepted without asking, which spares
/// every ordinary message a round trip through the control plane.
#[derive(Debug, Clone, Deserialize)]
pub struct VerdictScreen {
    /// The marker header field, e.g. `X-MXG-Risk`.
    pub header: String,
    /// The class names in it that may lead to a refusal.
    pub classes: Vec<String>,
}

impl VerdictScreen {
    /// True when the message must wait: a marker names a refusing class, or
    /// the scanner's features are missing (nothing is known, so ask).
    pub fn needs_verdict(&self, features: &serde_json::Value) -> bool {
        let Some(headers) = features.get("headers").and_then(|h| h.as_object()) else {
            return true;
        };
        headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(&self.header))
            .flat_map(|(_, values)| values.as_array().into_iter().flatten())
            .any(|value| match value.as_str() {
                Some(v) => self
                    .classes
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(v.trim())),
                None => true,
            })
    }
}

/// The control plane's answer for one message.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Verdict {
    pub queue_id: String,
    /// Refuse the whole message with this reply (a 5xx, normally 550
    /// 5.7.1); absent means accept.
    #[serde(default)]
    pub reject: Option<RejectReply>,
    /// Accepted and already in the store with its body (a PostgreSQL
    /// store, `store_ack_ms`): the session says 250 and no `Received`
    /// event follows, the control plane has it already.
    #[serde(default)]
    pub stored: bool,
    /// Not stored (the store failed or is unreachable): the spool file
    /// goes and the client gets this 4xx and tries again later.
    #[serde(default)]
    pub defer: Option<DeferReply>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RejectReply {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

impl RejectReply {
    pub fn to_reply(&self) -> Reply {
        // Only permanent refusals make sense here; anything else is read as
        // the generic policy refusal rather than trusted blindly.
        let code = if (500..600).contains(&self.code) {
            self.code
        } else {
            550
        };
        let enhanced = if self.enhanced.starts_with("5.") {
            self.enhanced.as_str()
        } else {
            "5.7.1"
        };
        Reply::new(code, enhanced, self.text.clone())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeferReply {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

impl DeferReply {
    pub fn to_reply(&self) -> Reply {
        // Only transient refusals: a deferral must leave the message with
        // the client, so a 5xx (or a 2xx) here is read as 451 4.3.0.
        let code = if (400..500).contains(&self.code) {
            self.code
        } else {
            451
        };
        let enhanced = if self.enhanced.starts_with("4.") {
            self.enhanced.as_str()
        } else {
            "4.3.0"
        };
        Reply::new(code, enhanced, self.text.clone())
    }
}

#[derive(Default)]
pub struct Verdicts {
    waiting: Mutex<HashMap<String, oneshot::Sender<Verdict>>>,
}

impl Verdicts {
    /// Registers a waiting session; the receiver gets the verdict.
    pub fn register(&self, queue_id: &str) -> oneshot::Receiver<Verdict> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(queue_id.to_owned(), tx);
        rx
    }

    /// Hands a verdict to its session. False when no session waits for it
    /// any more (deadline passed, client gone): the message stays accepted.
    pub fn give(&self, verdict: Verdict) -> bool {
        let mut waiting = self.lock();
        match waiting.remove(&verdict.queue_id) {
            // Sent under the lock so `wait` cannot miss it (see there).
            Some(tx) => tx.send(verdict).is_ok(),
            None => false,
        }
    }

    /// Waits for the verdict up to `deadline`. None means "no verdict in
    /// time": accept, and let the control plane decide asynchronously.
    pub async fn wait(
        &self,
        queue_id: &str,
        mut rx: oneshot::Receiver<Verdict>,
        deadline: Duration,
    ) -> Option<Verdict> {
        if let Ok(Ok(v)) = tokio::time::timeout(deadline, &mut rx).await {
            return Some(v);
        }
        let removed = self.lock().remove(queue_id).is_some();
        if removed {
            None
        } else {
            // `give` took the entry first, and sent under the lock that we
            // just held: the verdict is in the channel already.
            rx.try_recv().ok()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Verdict>>> {
        self.waiting.lock().expect("verdict registry poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(id: &str) -> Verdict {
        Verdict {
            queue_id: id.into(),
            ..Verdict::default()
        }
    }

    #[tokio::test]
    async fn a_verdict_in_time_reaches_the_session() {
        let v = Verdicts::default();
        let rx = v.register("Q1");
        assert!(v.give(accept("Q1")));
        let got = v.wait("Q1", rx, Duration::from_secs(1)).await;
        assert_eq!(got.map(|g| g.queue_id), Some("Q1".into()));
    }

    #[tokio::test]
    async fn a_late_verdict_is_refused_so_the_control_plane_knows() {
        let v = Verdicts::default();
        let rx = v.register("Q2");
        assert!(v.wait("Q2", rx, Duration::from_millis(10)).await.is_none());
        assert!(!v.give(accept("Q2")));
    }

    #[test]
    fn reject_replies_are_always_permanent() {
        let r = RejectReply {
            code: 250,
            enhanced: "2.0.0".into(),
            text: "no".into(),
        };
        let reply = r.to_reply();
        assert_eq!(reply.code, 550);
        assert_eq!(reply.enhanced, "5.7.1");
    }

    #[test]
    fn defer_replies_are_always_transient() {
        let r = DeferReply {
            code: 550,
            enhanced: "5.7.1".into(),
            text: "store down".into(),
        };
        let reply = r.to_reply();
        assert_eq!((reply.code, reply.enhanced.as_str()), (451, "4.3.0"));
        let r = DeferReply {
            code: 452,
            enhanced: "4.3.1".into(),
            text: "full".into(),
        };
        assert_eq!(r.to_reply().code, 452);
    }

    #[test]
    fn a_verdict_reads_stored_and_defer_from_json() {
        let v: Verdict = serde_json::from_str(r#"{"queue_id": "Q", "stored": true}"#).unwrap();
        assert!(v.stored && v.defer.is_none() && v.reject.is_none());
        let v: Verdict = serde_json::from_str(
            r#"{"queue_id": "Q", "defer": {"code": 451, "enhanced": "4.3.0", "text": "t"}}"#,
        )
        .unwrap();
        assert!(!v.stored && v.defer.is_some());
    }

    #[test]
    fn the_screen_asks_only_for_markers_of_refusing_classes() {
        let screen = VerdictScreen {
            header: "X-MXG-Risk".into(),
            classes: vec!["secret".into()],
        };
        let with = |v: serde_json::Value| serde_json::json!({ "headers": v });
        assert!(!screen.needs_verdict(&with(serde_json::json!({}))));
        assert!(!screen.needs_verdict(&with(serde_json::json!({"X-MXG-Risk": ["high"]}))));
        assert!(screen.needs_verdict(&with(serde_json::json!({"x-mxg-risk": [" Secret "]}))));
        assert!(screen.needs_verdict(&with(
            serde_json::json!({"X-MXG-Risk": ["normal", "secret"]})
        )));
        // Nothing known about the content: ask.
        assert!(screen.needs_verdict(&serde_json::Value::Null));
        assert!(screen.needs_verdict(&serde_json::json!({})));
    }
}
