//! Whatever arrives, the scan returns: random bytes, MIME-ish noise,
//! truncated and corrupted messages, and structures built to exhaust a
//! recursive parser. A panic or stack overflow fails these tests.

mod common;

use common::{base64, count, crlf, scan, Rng};

fn sample_message() -> Vec<u8> {
    let pdf = base64(b"%PDF-1.4 binary \x00\x01\x02 stuff");
    let inner = base64(b"Subject: inner\r\n\r\nDE89370400440532013000\r\n");
    crlf(&format!(
        "Received: from a by b; Mon, 1 Jan 2024 10:00:00 +0000\n\
         Subject: =?UTF-8?Q?=C3=9Cberweisung?= =?ISO-8859-1?B?xHJ6dGlu?=\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\n\n\
         --outer\nContent-Type: multipart/alternative; boundary=alt\n\n\
         --alt\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n\
         Die =C4rztin: 4111 1111 1111 1111=\n und mehr\n\
         --alt\nContent-Type: text/html; charset=utf-8\n\n<p>DE89&nbsp;3704 <b>0044</b></p><!-- x -->\n\
         --alt--\n\
         --outer\nContent-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n{pdf}\n\
         --outer\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{inner}\n\
         --outer\nContent-Type: message/rfc822\n\nSubject: plain inner\nContent-Type: text/csv; name*=UTF-8''a%C3%A4.csv\n\nA123456780\n\
         --outer--\n"
    ))
}

#[test]
fn sample_is_meaningful() {
    let f = scan(&sample_message());
    assert_eq!(count(&f, "iban"), 1);
    assert_eq!(count(&f, "card"), 1);
    assert_eq!(count(&f, "kvnr"), 1);
    assert!(f.limits.is_empty());
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.below(2048);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = scan(&bytes);
    }
}

#[test]
fn random_mime_fragments() {
    const PIECES: &[&str] = &[
        "Content-Type: multipart/mixed; boundary=a\r\n",
        "Content-Type: multipart/alternative; boundary=\"b\"\r\n",
        "Content-Type: multipart/digest; boundary=a\r\n",
        "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=a\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Type: text/html; charset=utf-16\r\n",
        "Content-Type: text/plain; charset=shift_jis\r\n",
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n",
        "Content-Type: application/pdf; name*0*=UTF-8''a%; name*1=b\r\n",
        "Content-Disposition: attachment; filename=\"=?UTF-8?B?w4Q=?=\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Subject: =?UTF-8?B?w4Q?= =?x?Q?=FF?=\r\n",
        "X-H: v\r\n \r\n\t",
        "\r\n",
        "\n",
        "--a\r\n",
        "--a--\r\n",
        "--b\r\n",
        "--b--\r\n",
        "DE89 3704 0044 0532 0130 00",
        "4111111111111111 ",
        "=C4=\r\n",
        "<p>&nbsp;&#x41;&",
        "<script>",
        "-----BEGIN PGP MESSAGE-----",
        "wq/DpMO2\r\n",
        "\u{0}\u{ff}",
        ":",
        ";",
        "\"",
    ];
    let mut rng = Rng(42);
    for _ in 0..4000 {
        let mut m = Vec::new();
        for _ in 0..rng.below(40) {
            if rng.below(8) == 0 {
                m.push(rng.next() as u8);
            } else {
                m.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes());
            }
        }
        let _ = scan(&m);
    }
}

#[test]
fn every_truncation() {
    let m = sample_message();
    for end in 0..=m.len() {
        let _ = scan(&m[..end]);
    }
}

#[test]
fn corrupted_bytes() {
    let m = sample_message();
    let mut rng = Rng(7);
    for _ in 0..1500 {
        let mut c = m.clone();
        for _ in 0..=rng.below(8) {
            let at = rng.below(c.len());
            match rng.below(3) {
                0 => c[at] = rng.next() as u8,
                1 => {
                    c.remove(at);
                }
                _ => c.insert(at, b"\r\n-:;=<&\"\0"[rng.below(10)]),
            }
        }
        let _ = scan(&c);
    }
}

#[test]
fn deep_nesting_hits_limits_not_the_stack() {
    let levels = 30_000;
    let mut rfc822 = "Content-Type: message/rfc822\r\n\r\n".repeat(levels);
    rfc822.push_str("Subject: x\r\n\r\nDE89370400440532013000\r\n");
    let mut multi = String::new();
    for i in 0..levels {
        multi.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    multi.push_str("\r\nDE89370400440532013000\r\n");
    for m in [rfc822, multi] {
        // A modest stack, as a Python worker thread might have.
        let f = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || scan(m.as_bytes()))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(f.limits, ["depth"]);
        assert_eq!(count(&f, "iban"), 0);
    }
}

#[test]
fn very_many_parts() {
    let mut m = String::from("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for _ in 0..20_000 {
        m.push_str("--b\r\n\r\nx\r\n");
    }
    let f = scan(m.as_bytes());
    assert_eq!(f.parts, 512);
    assert_eq!(f.limits, ["parts"]);
}
