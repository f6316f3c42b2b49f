//! Command-line parsing for `mxg-benchload` (by hand, like the sink's).

use std::path::PathBuf;
use std::time::Duration;

use super::envelope::Recipients;

/// Recipient when none is given, like smtp-source's default.
const DEFAULT_RCPT: &str = "rcpt@benchload.test";

pub const USAGE: &str = "\
usage: mxg-benchload --server HOST:PORT [--server HOST:PORT ...]
                     [--messages N] [--connections C]
                     [--size BYTES] [--from ADDR]
                     [--to ADDR [--to ADDR ...] | [--rcpts R] --domains D1,D2,...]
                     [--helo NAME] [--pipelining] [--timeout SECS] [--json PATH]
       mxg-benchload --server HOST:PORT --idle N [--hold SECS] [--helo NAME]
                     [--timeout SECS] [--json PATH]

  --server HOST:PORT  SMTP server to load (IPv6 as [ADDR]:PORT); repeated,
                      the sessions are spread over the servers in turn
                      (the nodes of a cluster)
  --messages N        messages in all (default 1000)
  --connections C     concurrent sessions; each sends its share of the
                      messages in turn on one connection (default 10)
  --size BYTES        approximate message size, headers included (default 1024)
  --from ADDR         envelope sender and From (default bench@benchload.test)
  --to ADDR           a recipient of every message; repeatable
                      (default: the one recipient rcpt@benchload.test)
  --rcpts R           recipients per message, u<n>-<i>@DOMAIN (default 1)
  --domains D1,...    their domains, used round-robin
  --helo NAME         EHLO name, also in Message-IDs (default benchload.test)
  --pipelining        send MAIL, RCPTs and DATA in one write when the
                      server offers PIPELINING (RFC 2920)
  --timeout SECS      limit for each reply and each write (default 60)
  --json PATH         also write the results there as JSON
  --idle N            instead of mail: open N sessions at once, hold them
                      idle, then QUIT
  --hold SECS         how long idle sessions are held (default 10)
";

/// Idle mode's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idle {
    pub connections: usize,
    pub hold: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// One or more; session `i` goes to `servers[i % len]`.
    pub servers: Vec<String>,
    pub messages: u64,
    pub connections: usize,
    pub size: usize,
    pub from: String,
    pub recipients: Recipients,
    pub helo: String,
    pub pipelining: bool,
    pub timeout: Duration,
    pub json: Option<PathBuf>,
    /// Set: idle mode, and the send options above are unused.
    pub idle: Option<Idle>,
}

impl Default for Options {
    /// Everything but the server, which has no sensible default.
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            messages: 1000,
            connections: 10,
            size: 1024,
            from: "bench@benchload.test".to_owned(),
            recipients: Recipients::Fixed(vec![DEFAULT_RCPT.to_owned()]),
            helo: "benchload.test".to_owned(),
            pipelining: false,
            timeout: Duration::from_mins(1),
            json: None,
            idle: None,
        }
    }
}

impl Options {
    /// Checks what parsing alone cannot; also guards the library entry
    /// point against options built in code.
    pub fn check(&self) -> Result<(), String> {
        if self.servers.is_empty() || self.servers.iter().any(String::is_empty) {
            return Err("--server is required".to_owned());
        }
        if !is_word(&self.helo) {
            return Err("--helo must be a single non-empty word".to_owned());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".to_owned());
        }
        if let Some(idle) = self.idle {
            if idle.connections == 0 {
                return Err("--idle must be at least 1".to_owned());
            }
            return Ok(());
        }
        if self.messages == 0 || self.connections == 0 {
            return Err("--messages and --connections must be at least 1".to_owned());
        }
        if !is_address(&self.from) {
            return Err(format!("--from {:?} is not an address", self.from));
        }
        match &self.recipients {
            Recipients::Fixed(list) if list.is_empty() => {
                Err("recipients needed: --to, or --domains (with --rcpts)".to_owned())
            }
            Recipients::Fixed(list) => match list.iter().find(|a| !is_address(a)) {
                Some(bad) => Err(format!("--to {bad:?} is not an address")),
                None => Ok(()),
            },
            Recipients::Generated {
                per_message,
                domains,
            } => {
                if *per_message == 0 {
                    Err("--rcpts must be at least 1".to_owned())
                } else if domains.is_empty() || !domains.iter().all(|d| is_word(d)) {
                    Err("--domains needs non-empty names".to_owned())
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut opts = Options::default();
    let mut to = Vec::new();
    let mut rcpts = None;
    let mut domains = None;
    let mut idle = None;
    let mut hold = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        // Accept both "--flag value" and "--flag=value".
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--pipelining" if inline.is_none() => {
                opts.pipelining = true;
                continue;
            }
            _ => {}
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--server" => opts.servers.push(value),
            "--messages" => opts.messages = number(&flag, &value)?,
            "--connections" => opts.connections = number(&flag, &value)?,
            "--size" => opts.size = number(&flag, &value)?,
            "--from" => opts.from = value,
            "--to" => to.push(value),
            "--rcpts" => rcpts = Some(number(&flag, &value)?),
            "--domains" => {
                domains = Some(value.split(',').map(|d| d.trim().to_owned()).collect());
            }
            "--helo" => opts.helo = value,
            "--timeout" => opts.timeout = seconds(&flag, &value)?,
            "--json" => opts.json = Some(value.into()),
            "--idle" => idle = Some(number(&flag, &value)?),
            "--hold" => hold = Some(seconds(&flag, &value)?),
            "--pipelining" => return Err("--pipelining takes no value".to_owned()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    opts.recipients = match (to.is_empty(), rcpts, domains) {
        (true, rcpts, Some(domains)) => Recipients::Generated {
            per_message: rcpts.unwrap_or(1),
            domains,
        },
        (true, Some(_), None) => return Err("--rcpts needs --domains".to_owned()),
        (true, None, None) => opts.recipients,
        (false, None, None) => Recipients::Fixed(to),
        (false, ..) => return Err("--to excludes --rcpts and --domains".to_owned()),
    };
    opts.idle = match (idle, hold) {
        (Some(connections), hold) => Some(Idle {
            connections,
            hold: hold.unwrap_or(Duration::from_secs(10)),
        }),
        (None, Some(_)) => return Err("--hold needs --idle".to_owned()),
        (None, None) => None,
    };
    opts.check()?;
    Ok(Command::Run(opts))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag} {value}: {e}"))
}

/// Seconds, fractions allowed ("0.5").
fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = number(flag, value)?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{flag} {value}: {e}"))
}

/// One non-empty token without spaces or controls (a host or domain name).
fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c.is_control())
}

/// Loose on purpose (the server under test judges addresses), but enough to
/// keep `<`, `>` and spaces from breaking the commands sent.
fn is_address(s: &str) -> bool {
    is_word(s) && !s.contains(['<', '>']) && s.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn run(s: &str) -> Options {
        match parse(args(s)) {
            Ok(Command::Run(o)) => o,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn send_mode() {
        let o = run(
            "--server 127.0.0.1:2525 --messages 200 --connections=10 --size 5120 \
             --rcpts 3 --domains a.test,b.test --pipelining --timeout 0.5 --json r.json",
        );
        assert_eq!(o.servers, ["127.0.0.1:2525"]);
        assert_eq!(run("--server a:25 --server b:25").servers, ["a:25", "b:25"]);
        assert_eq!((o.messages, o.connections, o.size), (200, 10, 5120));
        assert_eq!(
            o.recipients,
            Recipients::Generated {
                per_message: 3,
                domains: vec!["a.test".into(), "b.test".into()]
            }
        );
        assert!(o.pipelining);
        assert_eq!(o.timeout, Duration::from_millis(500));
        assert_eq!(o.json, Some("r.json".into()));
        assert_eq!(o.idle, None);

        let o = run("--server h:25");
        assert_eq!(o.recipients, Recipients::Fixed(vec![DEFAULT_RCPT.into()]));
        let o = run("--server h:25 --to a@x.test --to b@x.test --from me@x.test");
        assert_eq!(
            o.recipients,
            Recipients::Fixed(vec!["a@x.test".into(), "b@x.test".into()])
        );
        assert!(!o.pipelining);
        assert_eq!(o.timeout, Duration::from_mins(1));
        assert_eq!(
            run("--server h:25 --domains d.test")
                .recipients
                .per_message(),
            1
        );
    }

    #[test]
    fn idle_mode() {
        let o = run("--server h:25 --idle 1000 --hold 5");
        assert_eq!(
            o.idle,
            Some(Idle {
                connections: 1000,
                hold: Duration::from_secs(5)
            })
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "--to a@x.test",
            "--server h:25 --to nobody",
            "--server h:25 --to a@x.test --domains d.test",
            "--server h:25 --rcpts 2",
            "--server h:25 --domains a.test,,b.test",
            "--server h:25 --to a@x.test --messages 0",
            "--server h:25 --to a@x.test --timeout -1",
            "--server h:25 --to a@x.test --timeout 0",
            "--server h:25 --hold 5",
            "--server h:25 --idle 0",
            "--server h:25 --to a@x.test --bogus 1",
            "--server",
            "--server h:25 --pipelining=yes",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse(args("--help")), Ok(Command::Help));
    }
}
