//! MAIL, RCPT and BDAT, read by mxg itself rather than by `smtp-proto`:
//! these are the commands whose every byte is relayed or decides where the
//! next command begins, so each is read exactly or refused
//! (ARCHITECTURE.md rules 12 and 12a).
//!
//! `smtp-proto` 0.2.5 drops the quotes of a quoted local part (so
//! `"a> NOTIFY=SUCCESS"@x` came out as `a> NOTIFY=SUCCESS@x`), drops CRs
//! inside one, replaces invalid UTF-8 with U+FFFD, decodes xtext into any
//! character, and saturates numbers that do not fit (`BDAT 9999…9` became
//! a small chunk size). Here an address is read by `address::read_path`,
//! parameters are checked against their RFCs, and numbers that do not fit
//! are refused.

use crate::address::{read_path, AddressError};
use crate::command::CommandError;
use crate::reply::Reply;

/// The arguments of a MAIL command, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailArgs {
    /// mxg's form (`address` module); empty for the null sender `<>`.
    pub address: String,
    /// SIZE (RFC 1870), when given.
    pub size: Option<u64>,
    /// BODY: `7BIT` or `8BITMIME` (RFC 6152).
    pub body: Option<&'static str>,
    pub smtputf8: bool,
    pub requiretls: bool,
    /// RET: `FULL` or `HDRS` (RFC 3461 §4.3).
    pub ret: Option<&'static str>,
    /// ENVID with its xtext decoded; printable ASCII (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// The arguments of a RCPT command, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptArgs {
    pub address: String,
    /// NOTIFY: `NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY` in that
    /// order (RFC 3461 §4.1); empty when not given.
    pub notify: Vec<&'static str>,
    /// ORCPT of type `rfc822`, xtext decoded; printable ASCII (§4.2).
    pub orcpt: Option<String>,
}

fn syntax(text: impl Into<String>) -> CommandError {
    CommandError::reply(Reply::new(501, "5.5.4", text))
}

/// A number of octets (SIZE, a BDAT chunk) that cannot be held is larger
/// than any limit: RFC 1870 §6.1 and RFC 3030 §2 answer 552 5.3.4.
pub fn too_large(what: &str) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!("{what} is larger than any message accepted here"),
    )
}

/// Why a decimal number could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Empty, or not all digits.
    NotANumber,
    /// All digits, but more than a u64 holds.
    TooLarge,
}

/// `1*DIGIT` as a u64, refused rather than wrapped or saturated when it
/// does not fit (smtp-proto 0.2.5 read `99999999999999999999999` as 999).
pub fn parse_u64(digits: &str) -> Result<u64, NumberError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotANumber);
    }
    digits.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(NumberError::TooLarge)
    })
}

/// Splits `rest` (what follows the verb) into the path and the parameter
/// tokens: `SP+ keyword SP* ":" SP* path [SP+ param]*`.
fn path_and_params<'a>(
    rest: &'a str,
    keyword: &str,
    usage: &str,
    path_error: &dyn Fn(AddressError) -> CommandError,
) -> Result<(String, Vec<&'a str>), CommandError> {
    let usage = || syntax(format!("Syntax: {usage}"));
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(usage)?
        .trim_start_matches(' ');
    let head = rest.get(..keyword.len()).ok_or_else(usage)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(usage());
    }
    let rest = rest[keyword.len()..].trim_start_matches(' ');
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(usage)?
        .trim_start_matches(' ');
    if !rest.starts_with('<') {
        return Err(usage());
    }
    let (address, used) = read_path(rest).map_err(path_error)?;
    let params = &rest[used..];
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(usage());
    }
    Ok((
        address,
        params.split(' ').filter(|p| !p.is_empty()).collect(),
    ))
}

/// The parameters in order, each checked (`param`) and refused when its
/// keyword was given before; one check for MAIL and RCPT alike.
fn each_param(
    params: Vec<&str>,
) -> impl Iterator<Item = Result<(String, Option<&str>), CommandError>> {
    let mut seen: Vec<String> = Vec::new();
    params.into_iter().map(move |token| {
        let (key, value) = param(token)?;
        if seen.contains(&key) {
            return Err(syntax(format!("{key} given twice")));
        }
        seen.push(key.clone());
        Ok((key, value))
    })
}

/// One `esmtp-param` (RFC 5321 §4.1.2): the keyword upper-cased and the
/// value, each checked for its syntax.
fn param(token: &str) -> Result<(String, Option<&str>), CommandError> {
    let (key, value) = match token.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (token, None),
    };
    let key_ok = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !key_ok {
        return Err(syntax("Syntax: bad parameter keyword"));
    }
    // esmtp-value = 1*(%d33-60 / %d62-126): no control, space, = or 8-bit.
    if let Some(v) = value {
        if v.is_empty() || !v.bytes().all(|b| (33..=126).contains(&b) && b != b'=') {
            return Err(syntax(format!(
                "Invalid value for {}",
                key.to_ascii_uppercase()
            )));
        }
    }
    Ok((key.to_ascii_uppercase(), value))
}

fn unsupported(key: &str) -> CommandError {
    CommandError::reply(Reply::new(
        555,
        "5.5.4",
        format!("Unsupported parameter {key}"),
    ))
}

fn no_value(key: &str, value: Option<&str>) -> Result<(), CommandError> {
    match value {
        None => Ok(()),
        Some(_) => Err(syntax(format!("{key} takes no value"))),
    }
}

fn needs_value<'a>(key: &str, value: Option<&'a str>) -> Result<&'a str, CommandError> {
    value.ok_or_else(|| syntax(format!("{key} needs a value")))
}

/// xtext (RFC 3461 §4): `xchar` is `!`..`~` but `+` and `=`; `+XX` with
/// two upper-case hex digits stands for one octet. The decoded value must
/// be printable ASCII (§4.2, §4.4: "printable (graphic and white space)
/// characters from the US-ASCII repertoire"); `None` otherwise.
pub fn decode_xtext(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let c = if b == b'+' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex
                .iter()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
            {
                return None;
            }
            i += 3;
            u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
        } else if (b'!'..=b'~').contains(&b) && b != b'=' {
            i += 1;
            b
        } else {
            return None;
        };
        if !(b' '..=b'~').contains(&c) {
            return None;
        }
        out.push(char::from(c));
    }
    Some(out)
}

/// `MAIL FROM:<reverse-path> [parameters]`; `rest` follows the verb, line
/// end removed.
pub fn parse_mail(rest: &str) -> Result<MailArgs, CommandError> {
    let path_error = |e: AddressError| address_reply(e, 501, "5.1.7", "sender");
    let (address, params) = path_and_params(
        rest,
        "FROM",
        "MAIL FROM:<address> [parameters]",
        &path_error,
    )?;
    let mut args = MailArgs {
        address,
        ..MailArgs::default()
    };
    for checked in each_param(params) {
        let (key, value) = checked?;
        match key.as_str() {
            "SIZE" => {
                // RFC 1870 §3: size-value = 1*20DIGIT.
                match parse_u64(needs_value(&key, value)?) {
                    Ok(n) => args.size = Some(n),
                    Err(NumberError::TooLarge) => {
                        return Err(CommandError::reply(too_large("SIZE")))
                    }
                    Err(NumberError::NotANumber) => return Err(syntax("SIZE must be a number")),
                }
            }
            "BODY" => {
                let v = needs_value(&key, value)?;
                args.body = Some(match v.to_ascii_uppercase().as_str() {
                    "7BIT" => "7BIT",
                    "8BITMIME" => "8BITMIME",
                    _ => return Err(syntax("BODY must be 7BIT or 8BITMIME")),
                });
            }
            "RET" => {
                let v = needs_value(&key, value)?;
                args.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => "FULL",
                    "HDRS" => "HDRS",
                    _ => return Err(syntax("RET must be FULL or HDRS (RFC 3461 4.3)")),
                });
            }
            "ENVID" => {
                let v = needs_value(&key, value)?;
                // RFC 3461 §4.4: at most 100 characters.
                match decode_xtext(v).filter(|_| v.len() <= 100) {
                    Some(envid) => args.envid = Some(envid),
                    None => {
                        return Err(syntax(
                            "ENVID must be xtext of at most 100 characters (RFC 3461 4)",
                        ))
                    }
                }
            }
            "SMTPUTF8" => {
                no_value(&key, value)?;
                args.smtputf8 = true;
            }
            "REQUIRETLS" => {
                no_value(&key, value)?;
                args.requiretls = true;
            }
            _ => return Err(unsupported(&key)),
        }
    }
    Ok(args)
}

/// `RCPT TO:<forward-path> [parameters]`; `rest` follows the verb.
pub fn parse_rcpt(rest: &str) -> Result<RcptArgs, CommandError> {
    let path_error = |e: AddressError| address_reply(e, 501, "5.1.3", "recipient");
    let (address, params) =
        path_and_params(rest, "TO", "RCPT TO:<address> [parameters]", &path_error)?;
    if address.is_empty() {
        return Err(path_error(AddressError::NoDomain));
    }
    let mut args = RcptArgs {
        address,
        ..RcptArgs::default()
    };
    for checked in each_param(params) {
        let (key, value) = checked?;
        match key.as_str() {
            "NOTIFY" => args.notify = notify(needs_value(&key, value)?)?,
            "ORCPT" => {
                let v = needs_value(&key, value)?;
                // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters.
                let decoded = v
                    .split_once(';')
                    .filter(|(kind, _)| kind.eq_ignore_ascii_case("rfc822") && v.len() <= 500)
                    .and_then(|(_, x)| decode_xtext(x))
                    .filter(|a| !a.is_empty());
                match decoded {
                    Some(orcpt) => args.orcpt = Some(orcpt),
                    None => {
                        return Err(syntax(
                            "ORCPT must be rfc822;xtext of at most 500 characters (RFC 3461 4.2)",
                        ))
                    }
                }
            }
            _ => return Err(unsupported(&key)),
        }
    }
    Ok(args)
}

/// NOTIFY = "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ), each once.
fn notify(value: &str) -> Result<Vec<&'static str>, CommandError> {
    let bad = || syntax("NOTIFY must be NEVER or some of SUCCESS,FAILURE,DELAY (RFC 3461 4.1)");
    let mut out = Vec::new();
    for word in value.split(',') {
        let w = ["NEVER", "SUCCESS", "FAILURE", "DELAY"]
            .into_iter()
            .find(|w| w.eq_ignore_ascii_case(word))
            .ok_or_else(bad)?;
        if out.contains(&w) {
            return Err(bad());
        }
        out.push(w);
    }
    if out.contains(&"NEVER") && out.len() > 1 {
        return Err(bad());
    }
    // The order the spool has always kept them in.
    out.sort_by_key(|w| {
        ["NEVER", "SUCCESS", "FAILURE", "DELAY"]
            .iter()
            .position(|x| x == w)
    });
    Ok(out)
}

/// The reply for an address that cannot be taken: syntax with the code of
/// its role (5.1.7 sender, 5.1.3 recipient, RFC 3463), 8-bit 553 5.6.7
/// (RFC 6531 §3.7.4.1).
fn address_reply(e: AddressError, code: u16, enhanced: &str, role: &str) -> CommandError {
    let reply = match e {
        AddressError::NonAscii => Reply::new(
            553,
            "5.6.7",
            format!("Non-ASCII {role} address needs SMTPUTF8"),
        ),
        AddressError::NoDomain if role == "recipient" => Reply::new(
            code,
            enhanced,
            "Recipient address needs a domain: this gateway only relays",
        ),
        e => Reply::new(code, enhanced, format!("Bad {role} address: {e}")),
    };
    CommandError::reply(reply)
}

/// How a BDAT line was read (RFC 3030 §2: `BDAT SP chunk-size [SP LAST]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bdat {
    Chunk {
        size: u64,
        last: bool,
    },
    /// The size was read but the rest of the line is wrong: the chunk is
    /// still there to be read past, then this reply.
    Bad {
        size: u64,
        reply: Reply,
    },
    /// The size cannot be known: after this reply the session must close
    /// (see `Session::bdat_lost` in mxg-relay).
    Lost(Reply),
}

/// Reads what follows `BDAT`.
pub fn parse_bdat(rest: &str) -> Bdat {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = match words.next().map(parse_u64) {
        Some(Ok(n)) => n,
        Some(Err(NumberError::TooLarge)) => return Bdat::Lost(too_large("BDAT chunk size")),
        _ => {
            return Bdat::Lost(Reply::new(
                501,
                "5.5.4",
                "Syntax: BDAT chunk-size [LAST]; the chunk size must be a number",
            ))
        }
    };
    match (words.next(), words.next()) {
        (None, _) => Bdat::Chunk { size, last: false },
        (Some(w), None) if w.eq_ignore_ascii_case("LAST") => Bdat::Chunk { size, last: true },
        _ => Bdat::Bad {
            size,
            reply: Reply::new(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<impl std::fmt::Debug, CommandError>) -> String {
        let e = r.unwrap_err().reply;
        format!("{} {}", e.code, e.enhanced)
    }

    #[test]
    fn rule_12_numbers_that_do_not_fit_are_refused_not_wrapped() {
        assert_eq!(
            parse_bdat(" 99999999999999999999999 LAST"),
            Bdat::Lost(too_large("BDAT chunk size"))
        );
        assert!(matches!(parse_bdat(" 12x LAST"), Bdat::Lost(r) if r.code == 501));
        assert!(matches!(parse_bdat(" -1"), Bdat::Lost(r) if r.code == 501));
        assert!(matches!(parse_bdat(""), Bdat::Lost(r) if r.code == 501));
        assert_eq!(
            parse_bdat(" 18446744073709551615 LAST"),
            Bdat::Chunk {
                size: u64::MAX,
                last: true
            }
        );
        assert_eq!(
            parse_bdat(" 0000000000000000000000007 last"),
            Bdat::Chunk {
                size: 7,
                last: true
            }
        );
        assert!(matches!(parse_bdat(" 5 LASTX"), Bdat::Bad { size: 5, .. }));
        assert_eq!(
            code(parse_mail(
                " FROM:<a@b.example> SIZE=99999999999999999999999"
            )),
            "552 5.3.4"
        );
        assert_eq!(
            code(parse_mail(" FROM:<a@b.example> SIZE=12k")),
            "501 5.5.4"
        );
        assert_eq!(code(parse_mail(" FROM:<a@b.example> SIZE=")), "501 5.5.4");
        assert_eq!(
            parse_mail(" FROM:<a@b.example> SIZE=100").unwrap().size,
            Some(100)
        );
    }

    #[test]
    fn rule_12a_parameters_are_checked() {
        let m = parse_mail(" FROM: <a@b.example> ret=hdrs ENVID=env+2B1 BODY=8bitmime SMTPUTF8")
            .unwrap();
        assert_eq!(m.ret, Some("HDRS"));
        assert_eq!(m.envid.as_deref(), Some("env+1"));
        assert_eq!(m.body, Some("8BITMIME"));
        assert!(m.smtputf8);
        let r = parse_rcpt(" TO:<r@c.example> NOTIFY=delay,Failure ORCPT=rfc822;r+40c.example")
            .unwrap();
        assert_eq!(r.notify, ["FAILURE", "DELAY"]);
        assert_eq!(r.orcpt.as_deref(), Some("r@c.example"));
        for bad in [
            " FROM:<a@b> RET=FULLX",
            " FROM:<a@b> RET=",
            " FROM:<a@b> ENVID=a+0D+0Ab",
            " FROM:<a@b> ENVID=a+2b",
            " FROM:<a@b> ENVID=a+FF",
            " FROM:<a@b> ENVID=a+",
            " FROM:<a@b> BODY=BINARYMIME",
            " FROM:<a@b> SMTPUTF8=yes",
            " FROM:<a@b> RET=FULL RET=HDRS",
            " FROM:<a@b>RET=FULL",
            " FROM:<a@b> =x",
            " FROM:a@b",
        ] {
            assert_eq!(code(parse_mail(bad)), "501 5.5.4", "{bad}");
        }
        for bad in [
            " TO:<r@c> NOTIFY=SUCCESS,NEVER",
            " TO:<r@c> NOTIFY=SUCCESS,SUCCESS",
            " TO:<r@c> NOTIFY=",
            " TO:<r@c> NOTIFY=SOMETIMES",
            " TO:<r@c> ORCPT=utf-8;r@c",
            " TO:<r@c> ORCPT=rfc822;",
            " TO:<r@c> ORCPT=rfc822;a+0Ab",
        ] {
            assert_eq!(code(parse_rcpt(bad)), "501 5.5.4", "{bad}");
        }
        assert_eq!(code(parse_mail(" FROM:<a@b> AUTH=<>")), "555 5.5.4");
        assert_eq!(code(parse_rcpt(" TO:<r@c> RET=FULL")), "555 5.5.4");
    }

    #[test]
    fn rule_12a_addresses_are_read_exactly_or_refused() {
        let r = parse_rcpt(" TO:<\"victim@other.example> NOTIFY=SUCCESS\"@evil.test>").unwrap();
        assert_eq!(r.address, "victim@other.example> NOTIFY=SUCCESS@evil.test");
        assert!(r.notify.is_empty(), "the quoted text is no parameter");
        assert_eq!(
            code(parse_mail(" FROM:<\"a\0b> RET=FULL ENVID=zz\"@x.example>")),
            "501 5.1.7"
        );
        assert_eq!(code(parse_rcpt(" TO:<\"a\rb\"@x.example>")), "501 5.1.3");
        assert_eq!(code(parse_rcpt(" TO:<postmaster>")), "501 5.1.3");
        assert_eq!(code(parse_rcpt(" TO:<>")), "501 5.1.3");
        assert_eq!(parse_mail(" FROM:<>").unwrap().address, "");
    }
}
