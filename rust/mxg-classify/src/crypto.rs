//! Is the message content end-to-end encrypted or signed?
//!
//! Judged on the top-level body only (inside a multipart/signed, on the
//! signed content): a message is end-to-end encrypted only if its content
//! as a whole is. An encrypted attachment next to readable text does not
//! make the message confidential, so it does not count.

use mail_parser::Message;

use crate::mime::{content_type, file_name, param};

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Protection {
    pub encryption: Option<&'static str>,
    pub signed: Option<&'static str>,
}

pub(crate) fn judge(msg: &Message<'_>) -> Protection {
    let mut p = Protection::default();
    let Some(mut body) = msg.parts.first() else {
        return p;
    };
    if content_type(body, false) == "multipart/signed" {
        // RFC 1847 §2.1: the protocol parameter names the signature type.
        p.signed = match lower(param(body, "protocol")).as_deref() {
            Some("application/pkcs7-signature" | "application/x-pkcs7-signature") => Some("smime"),
            Some("application/pgp-signature") => Some("pgp"),
            _ => None,
        };
        // …and the first body part is the signed content.
        match body
            .sub_parts()
            .and_then(|ids| ids.first())
            .and_then(|&id| msg.parts.get(id as usize))
        {
            Some(first) => body = first,
            None => return p,
        }
    }
    match content_type(body, false).as_str() {
        // RFC 3156 §4.
        "multipart/encrypted"
            if lower(param(body, "protocol")).as_deref() == Some("application/pgp-encrypted") =>
        {
            p.encryption = Some("pgp");
        }
        // RFC 8551 §3.2.2: smime-type says what the CMS object is; old
        // clients leave it out, and then the .p7m name means enveloped.
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            match lower(param(body, "smime-type")).as_deref() {
                Some("enveloped-data" | "authenveloped-data") => p.encryption = Some("smime"),
                Some("signed-data") => p.signed = p.signed.or(Some("smime")),
                None if file_name(body)
                    .is_some_and(|n| n.to_ascii_lowercase().ends_with(".p7m")) =>
                {
                    p.encryption = Some("smime");
                }
                _ => {}
            }
        }
        // Inline PGP (RFC 4880 §6.2 armor) as the whole text body.
        "text/plain" => {
            let text = body.text_contents().unwrap_or_default().trim();
            if text.starts_with("-----BEGIN PGP MESSAGE-----")
                && text.ends_with("-----END PGP MESSAGE-----")
            {
                p.encryption = Some("pgp");
            } else if text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
                p.signed = p.signed.or(Some("pgp"));
            }
        }
        _ => {}
    }
    p
}

fn lower(s: Option<&str>) -> Option<String> {
    s.map(|s| s.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::parser;

    fn judge_raw(raw: &str) -> Protection {
        judge(&parser().parse(raw.as_bytes()).unwrap())
    }

    fn p(encryption: Option<&'static str>, signed: Option<&'static str>) -> Protection {
        Protection { encryption, signed }
    }

    #[test]
    fn smime_enveloped() {
        let m =
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\nMIIB\r\n";
        assert_eq!(judge_raw(m), p(Some("smime"), None));
        let m = "Content-Type: application/x-pkcs7-mime; name=\"smime.p7m\"\r\n\r\nMIIB\r\n";
        assert_eq!(judge_raw(m), p(Some("smime"), None));
        let m = "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n\r\nx\r\n";
        assert_eq!(judge_raw(m), p(Some("smime"), None));
    }

    #[test]
    fn smime_opaque_signed_and_compressed() {
        let m = "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n\r\nx\r\n";
        assert_eq!(judge_raw(m), p(None, Some("smime")));
        let m = "Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\n\r\nx\r\n";
        assert_eq!(judge_raw(m), p(None, None));
    }

    #[test]
    fn pgp_mime() {
        let m = "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
                 --b\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\
                 --b--\r\n";
        assert_eq!(judge_raw(m), p(Some("pgp"), None));
    }

    #[test]
    fn signed_then_look_inside() {
        let m = "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\r\n\r\n\
                 --s\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nx\r\n\
                 --s\r\nContent-Type: application/pkcs7-signature\r\n\r\nsig\r\n--s--\r\n";
        assert_eq!(judge_raw(m), p(Some("smime"), Some("smime")));
        let m = "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=s\r\n\r\n\
                 --s\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                 --s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n";
        assert_eq!(judge_raw(m), p(None, Some("pgp")));
    }

    #[test]
    fn inline_pgp() {
        let m = "Subject: x\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(judge_raw(m), p(Some("pgp"), None));
        // Armor quoted inside other text is not the whole body.
        let m = "Subject: x\r\n\r\nSee below\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(judge_raw(m), p(None, None));
        let m =
            "Subject: x\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n";
        assert_eq!(judge_raw(m), p(None, Some("pgp")));
    }

    #[test]
    fn encrypted_attachment_is_not_e2e() {
        let m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
                 --b\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=a.p7m\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(judge_raw(m), p(None, None));
    }
}
