//! The boundary's JSON as the control plane writes and reads it, checked
//! against files both sides can use (tests/golden/ at the repository
//! root): a delivery job in, a `delivery_done` event's results out.

use mxg_relay::job::{AttemptNote, RecipientResult, Status};
use mxg_relay::{DeliveryJob, Method, Reason, TlsLevel};
use serde_json::Value;

fn golden(name: &str) -> String {
    let path = format!("{}/../../tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_job_as_the_control_plane_sends_it() {
    let job: DeliveryJob = serde_json::from_str(&golden("job.json")).unwrap();
    assert_eq!(job.tls.level, TlsLevel::Qualified);
    assert_eq!(
        job.tls.methods,
        [
            Method::DaneEe,
            Method::DaneTa,
            Method::MtaSts,
            Method::DnssecPkix
        ]
    );
    assert_eq!(job.recipients[0].orcpt.as_deref(), Some("bob@example.test"));
    assert!(mxg_dane::usable(&job.hosts[0].tlsa));
    assert_eq!(job.hosts[0].addresses.len(), 2);
    assert!(job.hosts[1].sts && job.hosts[1].pins.len() == 1);
    assert_eq!(job.hosts[1].port, None);
}

/// A job that leaves `methods` out counts what the control plane's
/// `delivery.qualified_methods` does by default (the golden job's list).
#[test]
fn default_methods_are_the_control_planes_default() {
    let full: DeliveryJob = serde_json::from_str(&golden("job.json")).unwrap();
    let mut minimal: Value = serde_json::from_str(&golden("job.json")).unwrap();
    minimal["tls"] = serde_json::json!({"level": "encrypted"});
    let minimal: DeliveryJob = serde_json::from_value(minimal).unwrap();
    assert_eq!(minimal.tls.methods, full.tls.methods);
}

#[test]
fn results_and_attempts_read_and_write_the_same_json() {
    let done: Value = serde_json::from_str(&golden("delivery_done.json")).unwrap();
    for value in done["results"].as_array().unwrap() {
        let result: RecipientResult = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&result).unwrap(), value);
    }
    for value in done["attempts"].as_array().unwrap() {
        let note: AttemptNote = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(note.reason, Some(Reason::TlsaInvalid));
        assert_eq!(&serde_json::to_value(&note).unwrap(), value);
    }
}

#[test]
fn a_result_names_its_reason_and_omits_it_when_sent() {
    let done: Value = serde_json::from_str(&golden("delivery_done.json")).unwrap();
    let sent: RecipientResult = serde_json::from_value(done["results"][0].clone()).unwrap();
    assert_eq!((sent.status, sent.reason), (Status::Sent, None));
    assert_eq!(sent.tls.as_ref().unwrap().method, Some(Method::Pinned));
    let deferred = RecipientResult {
        status: Status::Deferred,
        tls: None,
        level: TlsLevel::None,
        unmet: true,
        reason: Some(Reason::TlsaInvalid),
        ..sent.clone()
    };
    let json = serde_json::to_value(&deferred).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address", "code", "enhanced", "host", "ip", "level", "reason", "status", "text",
            "unmet"
        ]
    );
    assert_eq!(json["reason"], "tlsa-invalid");
    assert_eq!(json["status"], "deferred");
    assert!(serde_json::to_value(&sent).unwrap().get("reason").is_none());
}
