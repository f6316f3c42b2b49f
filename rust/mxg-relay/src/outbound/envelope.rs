//! MAIL FROM and RCPT TO for the next hop (ARCHITECTURE.md rule 12a).
//!
//! `envelope_command` is the one function that writes them. It quotes the
//! local part where it is not a Dot-string (`mxg_smtp::address`), writes
//! only parameters whose keyword and value are safe, and refuses anything
//! else: whatever is in the job (from this version's intake, from a spool
//! an older version wrote, from the control plane), no address or value can
//! add a parameter, a token or a line on the wire. A refused address is
//! never sent; its recipient is bounced with the reason.

use super::conn::Caps;
use super::wire::xtext;
use crate::job::DeliveryJob;
use mxg_smtp::address::{write_mailbox, AddressError};
use mxg_spool::Recipient;

/// Why an envelope command was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unwritable {
    #[error("{0}")]
    Address(#[from] AddressError),
    #[error("{0} parameter is not valid")]
    Param(&'static str),
}

/// Every extension a command may use, for checking a job before any
/// connection: what passes here passes on every server.
pub fn all_caps() -> Caps {
    Caps {
        size: Some(0),
        eightbitmime: true,
        smtputf8: true,
        dsn: true,
        ..Caps::default()
    }
}

/// Writes `verb:<address>` and its parameters, or refuses.
fn envelope_command(
    verb: &str,
    address: &str,
    utf8: bool,
    params: &[(&'static str, Option<String>)],
) -> Result<String, Unwritable> {
    let mut cmd = format!("{verb}:<{}>", write_mailbox(address, utf8)?);
    for (key, value) in params {
        // esmtp-keyword (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") and
        // esmtp-value 1*(%d33-60 / %d62-126), RFC 5321 §4.1.2.
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.as_deref().is_none_or(|v| {
            !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'=')
        });
        if !key_ok || !value_ok {
            return Err(Unwritable::Param(key));
        }
        cmd.push(' ');
        cmd.push_str(key);
        if let Some(v) = value {
            cmd.push('=');
            cmd.push_str(v);
        }
    }
    Ok(cmd)
}

/// One of a parameter's fixed words, upper-cased.
fn word(
    key: &'static str,
    value: &str,
    allowed: &[&'static str],
) -> Result<Option<String>, Unwritable> {
    allowed
        .iter()
        .find(|w| w.eq_ignore_ascii_case(value))
        .map(|w| Some((*w).to_owned()))
        .ok_or(Unwritable::Param(key))
}

/// xtext of a value that must be printable ASCII before encoding
/// (RFC 3461 §4.2, §4.4).
fn printable_xtext(key: &'static str, value: &str) -> Result<String, Unwritable> {
    if value.is_empty() || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(Unwritable::Param(key));
    }
    Ok(xtext(value))
}

/// `NEVER` alone, or some of `SUCCESS`, `FAILURE`, `DELAY`, each once.
fn notify(words: &[String]) -> Result<String, Unwritable> {
    const WORDS: [&str; 4] = ["NEVER", "SUCCESS", "FAILURE", "DELAY"];
    let mut out: Vec<&str> = Vec::new();
    for w in words {
        let w = WORDS
            .into_iter()
            .find(|x| x.eq_ignore_ascii_case(w))
            .ok_or(Unwritable::Param("NOTIFY"))?;
        if out.contains(&w) {
            return Err(Unwritable::Param("NOTIFY"));
        }
        out.push(w);
    }
    if out.contains(&"NEVER") && out.len() > 1 {
        return Err(Unwritable::Param("NOTIFY"));
    }
    Ok(out.join(","))
}

/// MAIL FROM with the parameters the server takes.
pub fn mail_command(job: &DeliveryJob, caps: &Caps, size: usize) -> Result<String, Unwritable> {
    let mut params = Vec::new();
    if caps.size.is_some() {
        params.push(("SIZE", Some(size.to_string())));
    }
    if caps.eightbitmime {
        if let Some(body) = &job.body {
            params.push(("BODY", word("BODY", body, &["7BIT", "8BITMIME"])?));
        }
    }
    if job.smtputf8 {
        params.push(("SMTPUTF8", None));
    }
    if job.tls.requiretls {
        // RFC 8689 §4.2.1: passed on; `open` made sure it is offered.
        params.push(("REQUIRETLS", None));
    }
    if caps.dsn {
        if let Some(ret) = &job.ret {
            params.push(("RET", word("RET", ret, &["FULL", "HDRS"])?));
        }
        if let Some(envid) = &job.envid {
            params.push(("ENVID", Some(printable_xtext("ENVID", envid)?)));
        }
    }
    envelope_command("MAIL FROM", &job.sender, job.smtputf8, &params)
}

/// RCPT TO with the parameters the server takes.
pub fn rcpt_command(rcpt: &Recipient, caps: &Caps, smtputf8: bool) -> Result<String, Unwritable> {
    let mut params = Vec::new();
    if caps.dsn {
        if !rcpt.notify.is_empty() {
            params.push(("NOTIFY", Some(notify(&rcpt.notify)?)));
        }
        if let Some(orcpt) = &rcpt.orcpt {
            let value = printable_xtext("ORCPT", orcpt)?;
            params.push(("ORCPT", Some(format!("rfc822;{value}"))));
        }
    }
    if rcpt.address.is_empty() {
        return Err(Unwritable::Address(AddressError::NoDomain));
    }
    envelope_command("RCPT TO", &rcpt.address, smtputf8, &params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxg_smtp::{parse_command, Command, MailArgs, RcptArgs};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn job(sender: &str) -> DeliveryJob {
        serde_json::from_value(serde_json::json!({
            "job_id": 1, "queue_id": "q", "destination": "d", "sender": sender,
            "recipients": [], "hosts": [], "tls": {"level": "none"},
        }))
        .unwrap()
    }

    fn rcpt(address: &str) -> Recipient {
        Recipient {
            address: address.to_owned(),
            notify: Vec::new(),
            orcpt: None,
        }
    }

    #[test]
    fn rule_12a_quoted_local_parts_leave_quoted() {
        let caps = all_caps();
        assert_eq!(
            rcpt_command(
                &rcpt("victim@other.example> NOTIFY=SUCCESS@evil.test"),
                &caps,
                false
            )
            .unwrap(),
            "RCPT TO:<\"victim@other.example> NOTIFY=SUCCESS\"@evil.test>"
        );
        assert_eq!(
            rcpt_command(&rcpt("quoted user@x.example"), &caps, false).unwrap(),
            "RCPT TO:<\"quoted user\"@x.example>"
        );
        assert_eq!(
            mail_command(&job("a\"b\\c@x.example"), &Caps::default(), 0).unwrap(),
            "MAIL FROM:<\"a\\\"b\\\\c\"@x.example>"
        );
        assert_eq!(
            mail_command(&job(""), &Caps::default(), 0).unwrap(),
            "MAIL FROM:<>"
        );
    }

    #[test]
    fn rule_12a_what_cannot_be_written_safely_is_refused() {
        let caps = all_caps();
        // As an older version could have spooled them.
        for bad in [
            "a\0b> RET=FULL ENVID=zz@x.example",
            "a\r\nRSET@x.example",
            "a@x.example> NOTIFY=SUCCESS",
            "a@x y",
            "nodomain",
            "@x.example",
            "j\u{f6}rg@x.example",
        ] {
            assert!(rcpt_command(&rcpt(bad), &caps, false).is_err(), "{bad:?}");
            assert!(mail_command(&job(bad), &caps, 0).is_err(), "{bad:?}");
        }
        let mut j = job("a@x.example");
        j.ret = Some("FULL ENVID=x".into());
        assert_eq!(mail_command(&j, &caps, 0), Err(Unwritable::Param("RET")));
        let mut j = job("a@x.example");
        j.body = Some("8BITMIME\r\nRSET".into());
        assert_eq!(mail_command(&j, &caps, 0), Err(Unwritable::Param("BODY")));
        let mut j = job("a@x.example");
        j.envid = Some("a\r\nb".into());
        assert_eq!(mail_command(&j, &caps, 0), Err(Unwritable::Param("ENVID")));
        let mut r = rcpt("r@x.example");
        r.notify = vec!["SUCCESS ORCPT=rfc822;x".into()];
        assert_eq!(
            rcpt_command(&r, &caps, false),
            Err(Unwritable::Param("NOTIFY"))
        );
    }

    /// Characters that have broken SMTP envelopes somewhere, and a few
    /// that are only unusual.
    const NASTY: &[char] = &[
        '\0', '\r', '\n', '\t', ' ', '<', '>', '"', '\\', '@', '.', ',', ':', ';', '=', '+', '[',
        ']', '(', ')', '\u{7f}', '\u{85}', '\u{2028}', 'é', 'ß', 'a', 'Z', '0', '-', '_', '%',
    ];

    fn nasty(rng: &mut StdRng, max: usize) -> String {
        let len = rng.random_range(0..=max);
        (0..len)
            .map(|_| {
                if rng.random_bool(0.7) {
                    char::from(rng.random_range(b'a'..=b'z'))
                } else {
                    NASTY[rng.random_range(0..NASTY.len())]
                }
            })
            .collect()
    }

    fn nasty_address(rng: &mut StdRng) -> String {
        match rng.random_range(0..4) {
            0 => nasty(rng, 12),
            1 => format!("{}@{}", nasty(rng, 10), nasty(rng, 8)),
            2 => format!("{}@example.test", nasty(rng, 12)),
            _ => format!("{}@{}.test", nasty(rng, 6), nasty(rng, 5)),
        }
    }

    fn maybe(rng: &mut StdRng, choices: &[&str]) -> Option<String> {
        match rng.random_range(0..5) {
            0 | 1 => None,
            2 | 3 => Some(choices[rng.random_range(0..choices.len())].to_owned()),
            _ => Some(nasty(rng, 10)),
        }
    }

    /// Whatever goes in, what comes out is one line that reads back (by
    /// mxg's own strict reader) as exactly the address and parameters
    /// meant: no parameter, token or line can be added.
    #[test]
    fn rule_12a_no_input_adds_a_parameter_token_or_line() {
        let mut rng = StdRng::seed_from_u64(0x14_12a);
        let caps = all_caps();
        let (mut written, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let utf8 = rng.random_bool(0.5);
            let mut j = job(&if rng.random_bool(0.1) {
                String::new()
            } else {
                nasty_address(&mut rng)
            });
            j.smtputf8 = utf8;
            j.ret = maybe(&mut rng, &["FULL", "hdrs"]);
            j.body = maybe(&mut rng, &["7BIT", "8bitmime"]);
            j.envid = maybe(&mut rng, &["env+1", "x=y z"]);
            let mut r = rcpt(&nasty_address(&mut rng));
            r.notify = (0..rng.random_range(0..3))
                .filter_map(|_| maybe(&mut rng, &["NEVER", "SUCCESS", "delay", "FAILURE"]))
                .collect();
            r.orcpt = maybe(&mut rng, &["r@x.test", "a b+c"]);
            let size = rng.random_range(0..usize::MAX);
            for line in [
                mail_command(&j, &caps, size).map(|l| (l, true)),
                rcpt_command(&r, &caps, utf8).map(|l| (l, false)),
            ] {
                let Ok((line, is_mail)) = line else {
                    refused += 1;
                    continue;
                };
                written += 1;
                assert!(!line.chars().any(char::is_control), "{line:?}");
                let parsed = parse_command(format!("{line}\r\n").as_bytes())
                    .unwrap_or_else(|e| panic!("{line:?} does not read back: {e:?}"));
                let expected = if is_mail {
                    Command::Mail(MailArgs {
                        address: j.sender.clone(),
                        size: Some(size as u64),
                        body: j.body.as_deref().map(|b| upper(b, &["7BIT", "8BITMIME"])),
                        smtputf8: utf8,
                        requiretls: false,
                        ret: j.ret.as_deref().map(|b| upper(b, &["FULL", "HDRS"])),
                        envid: j.envid.clone(),
                    })
                } else {
                    let mut notify: Vec<&'static str> = r
                        .notify
                        .iter()
                        .map(|w| upper(w, &["NEVER", "SUCCESS", "FAILURE", "DELAY"]))
                        .collect();
                    notify.sort_by_key(|w| {
                        ["NEVER", "SUCCESS", "FAILURE", "DELAY"]
                            .iter()
                            .position(|x| x == w)
                    });
                    Command::Rcpt(RcptArgs {
                        address: r.address.clone(),
                        notify,
                        orcpt: r.orcpt.clone(),
                    })
                };
                assert_eq!(parsed, expected, "{line:?}");
            }
        }
        // The generator reaches both sides.
        assert!(written > 6_000 && refused > 6_000, "{written} {refused}");
    }

    fn upper(w: &str, words: &[&'static str]) -> &'static str {
        words
            .iter()
            .find(|x| x.eq_ignore_ascii_case(w))
            .expect("written, so one of the words")
    }
}
