//! Command-line parsing (by hand: a handful of flags, no dependency).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: mxg-benchsink --listen ADDR:PORT [--listen ADDR:PORT ...]
                     [--cert CHAIN.pem --key KEY.pem] [--hostname NAME]
                     [--stats-file PATH] [--reply-delay-ms N]

  --listen ADDR:PORT   address to accept SMTP on (IPv6 as [ADDR]:PORT); repeatable
  --cert, --key        PEM certificate chain and private key; enables STARTTLS
  --hostname NAME      name in the greeting and EHLO reply (default: localhost)
  --stats-file PATH    rewrite JSON counters there every second and at exit
  --reply-delay-ms N   wait N ms before the final reply to each message
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub listen: Vec<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostname: String,
    pub stats_file: Option<PathBuf>,
    pub reply_delay: Duration,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut opts = Options {
        listen: Vec::new(),
        cert: None,
        key: None,
        hostname: "localhost".to_owned(),
        stats_file: None,
        reply_delay: Duration::ZERO,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        // Accept both "--flag value" and "--flag=value".
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--listen" => {
                opts.listen.push(value.parse().map_err(|e| {
                    format!("--listen {value}: {e} (want ADDR:PORT or [ADDR]:PORT)")
                })?);
            }
            "--cert" => opts.cert = Some(value.into()),
            "--key" => opts.key = Some(value.into()),
            "--hostname" => opts.hostname = value,
            "--stats-file" => opts.stats_file = Some(value.into()),
            "--reply-delay-ms" => {
                let ms = value
                    .parse()
                    .map_err(|e| format!("--reply-delay-ms {value}: {e}"))?;
                opts.reply_delay = Duration::from_millis(ms);
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if opts.listen.is_empty() {
        return Err("at least one --listen is required".to_owned());
    }
    if opts.cert.is_some() != opts.key.is_some() {
        return Err("--cert and --key go together".to_owned());
    }
    if opts.hostname.is_empty()
        || opts
            .hostname
            .contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err("--hostname must be a single non-empty word".to_owned());
    }
    Ok(Command::Run(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn full() {
        let Command::Run(o) = parse(args(
            "--listen 127.0.0.1:2525 --listen [::1]:2526 --cert c.pem --key=k.pem \
             --hostname sink.test --stats-file s.json --reply-delay-ms 5",
        ))
        .unwrap() else {
            panic!("not run")
        };
        assert_eq!(o.listen.len(), 2);
        assert!(o.listen[1].is_ipv6());
        assert_eq!(o.key, Some("k.pem".into()));
        assert_eq!(o.hostname, "sink.test");
        assert_eq!(o.reply_delay, Duration::from_millis(5));
    }

    #[test]
    fn errors() {
        assert!(parse(args("")).is_err());
        assert!(parse(args("--listen 127.0.0.1")).is_err());
        assert!(parse(args("--listen 127.0.0.1:25 --cert c.pem")).is_err());
        assert!(parse(args("--listen 127.0.0.1:25 --bogus 1")).is_err());
        assert!(parse(args("--listen")).is_err());
        assert_eq!(parse(args("--help")), Ok(Command::Help));
    }
}
