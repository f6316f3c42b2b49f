//! Whole messages through the public API: transfer encodings, charsets,
//! HTML, multipart structure, nesting and attachments.

mod common;

use common::{base64, count, crlf, options, scan};
use mxg_classify::Attachment;

const IBAN: &str = "DE89 3704 0044 0532 0130 00";

#[test]
fn plain_7bit_with_received_first() {
    let m = crlf(&format!(
        "Received: from a.example by b.example; Mon, 1 Jan 2024 10:00:00 +0000\n\
         From: a@example.org\nSubject: Zahlung\n\n\
         Bitte an {IBAN} überweisen. Karte 4111 1111 1111 1111, IdNr 86095742719, KVNR A123456780.\n"
    ));
    let f = scan(&m);
    assert_eq!(f.subject, "Zahlung");
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "card"), 1);
    assert_eq!(count(&f, "tax-id"), 1);
    assert_eq!(count(&f, "kvnr"), 1);
    assert_eq!(f.parts, 1);
    assert!(f.attachments.is_empty() && f.limits.is_empty());
    assert_eq!((f.encryption.as_deref(), f.signed.as_deref()), (None, None));
}

#[test]
fn base64_text() {
    let body = base64(format!("Konto: {IBAN}\nDiagnose folgt.").as_bytes());
    let m = crlf(&format!(
        "Subject: b64\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: base64\n\n{body}\n"
    ));
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);
}

#[test]
fn quoted_printable_soft_breaks_join_the_iban() {
    let m = crlf(
        "Subject: qp\nContent-Type: text/plain; charset=iso-8859-1\n\
         Content-Transfer-Encoding: quoted-printable\n\n\
         Die =C4rztin sagt: DE89 3704 0044 05=\n32 0130 00\n",
    );
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);
}

#[test]
fn iso_8859_1_and_windows_1252_bodies() {
    // "Ärztin" in Latin-1: 0xC4.
    let mut m = crlf("Subject: l1\nContent-Type: text/plain; charset=ISO-8859-1\n\n");
    m.extend_from_slice(b"Die \xc4rztin.\r\n");
    assert_eq!(count(&scan(&m), "keyword:health"), 1);
    // windows-1252: 0x80 is the euro sign, 0xDC "Ü".
    let mut m = crlf("Subject: cp\nContent-Type: text/plain; charset=windows-1252\n\n");
    m.extend_from_slice(b"\x80 100 per \xdcberweisung an DE89370400440532013000\r\n");
    let f = scan(&m);
    assert_eq!(count(&f, "keyword:health"), 1);
    assert_eq!(count(&f, "iban"), 1);
}

#[test]
fn utf16_koi8r_and_shift_jis_bodies() {
    let mut utf16 = vec![0xff, 0xfe];
    for u in format!("Diagnose {IBAN}").encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let m = crlf(&format!(
        "Subject: u16\nContent-Type: text/plain; charset=utf-16\n\
         Content-Transfer-Encoding: base64\n\n{}\n",
        base64(&utf16)
    ));
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);

    let mut m = crlf("Subject: koi\nContent-Type: text/plain; charset=koi8-r\n\n");
    m.extend_from_slice(b"\xf0\xd2\xc9\xd7\xc5\xd4!\r\n");
    assert_eq!(count(&scan(&m), "keyword:health"), 1);

    // "カード" in Shift_JIS: only found if the charset was decoded.
    let mut m = crlf("Subject: sjis\nContent-Type: text/plain; charset=Shift_JIS\n\n");
    m.extend_from_slice(b"\x83\x4a\x81\x5b\x83\x68 4111 1111 1111 1111\r\n");
    let f = scan(&m);
    assert_eq!(count(&f, "keyword:health"), 1);
    assert_eq!(count(&f, "card"), 1);
}

#[test]
fn unknown_charset_reads_as_utf8() {
    let m = crlf(&format!(
        "Subject: x\nContent-Type: text/plain; charset=x-made-up\n\nÄrztin {IBAN}\n"
    ));
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);
}

#[test]
fn encoded_word_subjects() {
    // "Überweisung DE89…" in UTF-8, base64 encoded word.
    let word = base64(format!("Überweisung {IBAN}").as_bytes()).replace('\n', "");
    let f = scan(&crlf(&format!("Subject: =?UTF-8?B?{word}?=\n\nhi\n")));
    assert_eq!(f.subject, format!("Überweisung {IBAN}"));
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);

    let f = scan(&crlf(
        "Subject: =?ISO-8859-1?Q?Befund_der_=C4rztin?=\n\nhi\n",
    ));
    assert_eq!(f.subject, "Befund der Ärztin");
    assert_eq!(count(&f, "keyword:health"), 1);
}

#[test]
fn html_entities_and_tags() {
    let m = crlf(
        "Subject: html\nContent-Type: text/html; charset=utf-8\n\n\
         <html><head><style>td{}</style></head><body>\
         <p>IBAN:&nbsp;DE89&nbsp;3704&nbsp;0044 <b>0532</b> 0130&#160;00</p>\
         <table><tr><td>Karte</td><td>4111&#x20;1111 1111 1111</td></tr></table>\
         <p>&Auml;rztin</p></body></html>\n",
    );
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "card"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);
}

#[test]
fn alternative_counts_once() {
    let m = crlf(&format!(
        "Subject: alt\nContent-Type: multipart/alternative; boundary=\"alt\"\n\n\
         --alt\nContent-Type: text/plain\n\nKonto {IBAN}, PRJ-0001\n\
         --alt\nContent-Type: text/html\n\n<p>Konto <b>{IBAN}</b>, PRJ-0001, GB82 WEST 1234 5698 7654 32</p>\n\
         --alt--\n"
    ));
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 2);
    assert_eq!(count(&f, "regex:prj"), 1);
    assert_eq!(f.parts, 3);
    assert!(f.attachments.is_empty());
}

#[test]
fn mixed_with_pdf_and_csv_attachments() {
    // The PDF's bytes contain an IBAN: binary attachments are not read.
    let pdf = format!("%PDF-1.4 {IBAN} 4111111111111111 %%EOF");
    let csv = "name;iban\nA;DE89370400440532013000\nB;GB82WEST12345698765432\n";
    let m = crlf(&format!(
        "Subject: mixed\nContent-Type: multipart/mixed; boundary=mix\n\n\
         --mix\nContent-Type: text/plain\n\nsee attachments\n\
         --mix\nContent-Type: application/pdf; name=\"Kontoauszug.pdf\"\n\
         Content-Disposition: attachment; filename=\"Kontoauszug.pdf\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n\
         --mix\nContent-Type: text/csv; charset=utf-8\n\
         Content-Disposition: attachment; filename=konten.csv\n\n{csv}\n\
         --mix--\n",
        base64(pdf.as_bytes())
    ));
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 2, "from the CSV only");
    assert_eq!(count(&f, "card"), 0, "the PDF is not read");
    assert_eq!(
        f.attachments,
        [
            Attachment {
                name: "Kontoauszug.pdf".into(),
                content_type: "application/pdf".into(),
                size: pdf.len() as u64,
            },
            Attachment {
                name: "konten.csv".into(),
                content_type: "text/csv".into(),
                // Sent with CRLF line ends, as text on the wire is.
                size: csv.replace('\n', "\r\n").len() as u64,
            },
        ]
    );
    assert_eq!(f.parts, 4);
}

#[test]
fn attachment_names_are_decoded_and_scanned() {
    let m = crlf(
        "Subject: names\nContent-Type: multipart/mixed; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\nhi\n\
         --b\nContent-Type: application/octet-stream\n\
         Content-Disposition: attachment; filename*=UTF-8''%C3%84rztin%20DE89370400440532013000.bin\n\n\
         xx\n\
         --b\nContent-Type: image/png; name=\"=?UTF-8?Q?Befund=5F=C3=84rztin.png?=\"\n\n\
         png\n\
         --b--\n",
    );
    let f = scan(&m);
    let names: Vec<&str> = f.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["Ärztin DE89370400440532013000.bin", "Befund_Ärztin.png"]
    );
    assert_eq!(f.attachments[1].content_type, "image/png");
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1);
}

#[test]
fn nested_messages_two_levels() {
    let m = crlf(&format!(
        "Subject: Fwd: Fwd: Befund\nContent-Type: multipart/mixed; boundary=outer\n\n\
         --outer\nContent-Type: text/plain\n\nsiehe unten\n\
         --outer\nContent-Type: message/rfc822\n\
         Content-Disposition: attachment; filename=fwd.eml\n\n\
         Subject: Fwd: Diagnose\nContent-Type: multipart/mixed; boundary=inner\n\n\
         --inner\nContent-Type: text/plain\n\nKVNR A123456780\n\
         --inner\nContent-Type: message/rfc822\n\n\
         Subject: PRJ-0042\nContent-Type: text/plain\n\n{IBAN}\n\
         --inner--\n\
         --outer--\n"
    ));
    let f = scan(&m);
    assert_eq!(f.subject, "Fwd: Fwd: Befund");
    assert_eq!(count(&f, "kvnr"), 1);
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "keyword:health"), 1, "inner subject scanned");
    assert_eq!(count(&f, "regex:prj"), 1, "innermost subject scanned");
    let attached: Vec<(&str, &str)> = f
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.content_type.as_str()))
        .collect();
    assert_eq!(attached, [("fwd.eml", "message/rfc822")]);
    // mixed, text, rfc822, inner root (mixed), text, rfc822, innermost root.
    assert_eq!(f.parts, 7);
    assert!(f.limits.is_empty());
}

#[test]
fn encoded_nested_message_is_parsed() {
    let inner = format!("Subject: inner\r\n\r\n{IBAN}\r\n");
    let m = crlf(&format!(
        "Subject: outer\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{}\n",
        base64(inner.as_bytes())
    ));
    let f = scan(&m);
    assert_eq!(count(&f, "iban"), 1);
    assert!(f.limits.is_empty());
}

#[test]
fn smime_and_pgp_detection() {
    let smime = crlf(
        "Subject: s\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n\
         Content-Disposition: attachment; filename=smime.p7m\n\
         Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\n",
    );
    let f = scan(&smime);
    assert_eq!(f.encryption.as_deref(), Some("smime"));
    assert_eq!(f.attachments[0].content_type, "application/pkcs7-mime");

    let pgp = crlf(
        "Subject: p\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=e\n\n\
         --e\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\
         --e\nContent-Type: application/octet-stream; name=encrypted.asc\n\n\
         -----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\n--e--\n",
    );
    let f = scan(&pgp);
    assert_eq!(f.encryption.as_deref(), Some("pgp"));
    assert_eq!(f.signed, None);

    let signed = crlf(&format!(
        "Subject: sig\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\n\n\
         --s\nContent-Type: text/plain\n\n{IBAN}\n\
         --s\nContent-Type: application/pkcs7-signature; name=smime.p7s\n\
         Content-Disposition: attachment; filename=smime.p7s\n\nMIIG\n--s--\n"
    ));
    let f = scan(&signed);
    assert_eq!(f.signed.as_deref(), Some("smime"));
    assert_eq!(f.encryption, None);
    assert_eq!(count(&f, "iban"), 1, "signed content is scanned");
}

#[test]
fn requested_headers() {
    let f = options(r#"{"headers": ["X-Class", "TLS-Required", "To"]}"#)
        .compile()
        .unwrap()
        .scan(&crlf(
            "To: b@example.org\nX-Class: =?UTF-8?Q?h=C3=B6her?=\nx-class: high\nSubject: s\n\n\
             Content-Type: message/rfc822\n\nX-Class: nested, not returned\n\n",
        ));
    assert_eq!(f.headers["x-class"], ["höher", "high"]);
    assert_eq!(f.headers["to"], ["b@example.org"]);
    assert!(!f.headers.contains_key("tls-required"));
}

#[test]
fn features_as_json() {
    let f = scan(&crlf(&format!("Subject: j\n\n{IBAN}\n")));
    let v: serde_json::Value = serde_json::to_value(&f).unwrap();
    assert_eq!(v["detectors"]["iban"], 1);
    assert_eq!(v["encryption"], serde_json::Value::Null);
    assert_eq!(v["limits"], serde_json::json!([]));
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attachments",
            "detectors",
            "encryption",
            "headers",
            "limits",
            "parts",
            "signed",
            "subject"
        ]
    );
}

#[test]
fn headers_without_body_are_scanned_as_text() {
    // No empty line: mail-parser reads everything as header fields.
    let f = scan(format!("Subject: x\r\nKonto {IBAN}").as_bytes());
    assert_eq!(count(&f, "iban"), 1);
    let f = scan(format!("just text {IBAN}").as_bytes());
    assert_eq!(count(&f, "iban"), 1);
}
