"""The text of ``mxg config example``: every key with its default.

tests/test_config.py checks that it loads and equals the embedded defaults.
"""

EXAMPLE = """\
# mxg configuration. Every key is optional; shown are the defaults.
# Durations: seconds, or a number with s/m/h/d ("90s", "5m", "4h", "5d").
# Relative paths are relative to this file.
# Any key can be overridden from the environment: MXG_<SECTION>__<KEY>=<TOML value>,
# e.g. MXG_SERVER__LISTEN='["0.0.0.0:25"]'.

[server]
# Our name in the greeting, EHLO replies and Received headers (default: the FQDN).
# hostname = "mxg.example.org"
# Addresses to listen on for the internal mail server (IPv6 as "[::1]:25").
listen = ["127.0.0.1:10025"]
# Who may relay through mxg. Never 0.0.0.0/0: mxg is not an open relay.
client_networks = ["127.0.0.0/8", "::1/128"]
max_connections = 1000
max_connections_per_client = 200
# Clients outside client_networks: "refuse" gets them 554 5.7.1 instead of
# the greeting; "allow" gives them sessions (refused at RCPT) in a pool of
# their own, so they never take the slots of max_connections.
outsiders = "refuse"
max_outsider_connections = 50
# PEM certificate chain and key for inbound STARTTLS (both or neither).
# tls_cert = "/etc/mxg/cert.pem"
# tls_key = "/etc/mxg/key.pem"
# How long open transactions may take to finish at shutdown.
shutdown_grace = "30s"
# Inflow control (Postfix's in_flow_delay): while more than in_flow_limit
# received messages wait for the control plane, a new MAIL pauses until it
# catches up, at most in_flow_delay; "0s" turns it off.
in_flow_delay = "1s"
in_flow_limit = 100
# At most this many transactions at once read their content and wait for
# the durable commit; the next waits before its 354 (at most in_flow_delay),
# so the time from the end of data to the 250 stays short under load; 0
# turns it off.
max_receiving = 64

[limits]
# RFC 5321 4.5.3.1.4 (512) plus what SIZE, BODY, DSN parameters add.
max_command_line = 2048
# RFC 5321 4.5.3.1.6: text lines of at most 1000 octets including CRLF.
max_data_line = 1000
max_message_size = 52428800
# Message octets all sessions together hold in memory while receiving
# (512 MiB: ten messages of the maximum size); past it: 452 4.3.1.
max_message_memory = 536870912
# RFC 5321 4.5.3.1.8 requires at least 100.
max_recipients = 1000
# Error replies before the connection is closed.
max_errors = 20
# RFC 5321 4.5.3.2.7: the server waits at least 5 minutes.
command_timeout = "5m"
data_timeout = "5m"

[data]
# Spool (data/spool) and queue database (data/queue.db).
directory = "mxg-data"
# The store: "" is the embedded SQLite queue.db in `directory`; a
# "postgresql://user@host/db" URL puts it on PostgreSQL (docs/cluster.md;
# create its schema with `mxg store migrate`).
store = ""
# On a PostgreSQL store the 250 waits until the message and its spool
# file are committed there; past this the client gets 451 and retries.
store_ack_timeout = "30s"

[cluster]
# Only with a PostgreSQL store (docs/cluster.md): this node's name, unique
# per store (default: the short host name); a second relay with the same
# name refuses to start.
# node = "mxg1"
# How often the node renews its lease, and how long a lease lasts: a node
# silent for a lease is dead, and the others take over its messages. The
# lease must be at least three heartbeats.
heartbeat = "2s"
lease = "15s"
# `mxg cluster drain`: how long in-flight deliveries may take to finish
# before the node hands over what is left and stops.
drain_timeout = "5m"

[dns]
# Empty: the system's resolver (/etc/resolv.conf).
nameservers = []
port = 53
timeout = "10s"
cache_size = 100000
# Trust the DNSSEC AD bit of these nameservers: only for a validating
# resolver you run and trust (normally on this host). mxg checks at start
# that answers for dnssec_probe (a signed name) come back authenticated.
trust_ad = false
dnssec_probe = "."

[delivery]
port = 25
# Name in EHLO; empty means server.hostname.
helo_name = ""
# Deprecated: the transport level of class normal; use [classes.normal] level.
# default_level = "encrypted"
# TLS parameters encrypted and qualified sessions must keep to:
# "bsi-tr-02102-2" (TLS 1.2/1.3, ECDHE on P-256/P-384, AES-GCM) or
# "modern" (adds X25519 and ChaCha20-Poly1305).
tls_profile = "bsi-tr-02102-2"
# Methods that authenticate a receiving server for the qualified level:
# dane-ee, dane-ta (DNSSEC-secure TLSA records, RFC 7672), mta-sts (an
# enforce policy, RFC 8461) and dnssec-pkix (DNSSEC-secure MX answer and a
# PKIX-valid certificate for the MX name).
qualified_methods = ["dane-ee", "dane-ta", "mta-sts", "dnssec-pkix"]
# Look up MTA-STS policies; an enforce policy restricts MX hosts and
# requires a PKIX-valid certificate for every message to that domain.
mta_sts = true
# Extra PKIX trust anchors (PEM) next to the system's roots.
# ca_file = "/etc/mxg/partner-ca.pem"
address_preference = "ipv4"
max_addresses = 10
connect_timeout = "30s"
# RFC 5321 4.5.3.2 client timeouts.
greeting_timeout = "5m"
command_timeout = "5m"
data_init_timeout = "2m"
data_block_timeout = "3m"
data_done_timeout = "10m"
max_per_destination = 20
max_messages_per_connection = 100
idle_timeout = "5s"
# Delivery jobs in flight at once.
max_jobs = 2000
# Tell recipients how each message travelled: adds, for example,
# "X-MXG-Protection: qualified; method=dane-ee; tls=TLSv1.3" (the level the
# session achieved) and removes any such field the message already has.
protection_header = false

[queue]
# Waits between attempts; the last one repeats.
retry_schedule = ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
max_lifetime = "5d"
# A delay DSN after this long (0 = never).
delay_warning_after = "4h"
scan_interval = "1s"

[retention]
# Finished messages, their evidence and their audit records are pruned
# this long after they were received (0 keeps them); a signed checkpoint
# keeps what remains of the audit trail verifiable. Checked this often.
keep = "90d"
prune_interval = "1h"

[dsn]
# From address of DSNs; empty means postmaster@<server.hostname>.
postmaster = ""
# Larger messages are returned as headers only.
return_full_message_limit = 1048576

[envelope]
# The secure envelope (docs/secure-envelope.md). A directory whose templates
# (page.html, carrier.txt, carrier-subject.txt, ...) replace the shipped ones.
# templates = "/etc/mxg/envelope"
# PBKDF2-HMAC-SHA256 iterations of the password (at least 600000).
iterations = 600000

[tlsrpt]
# Daily TLS reports (RFC 8460, docs/tlsrpt.md). Unset: on once dkim_key is
# set; true without a key sends the https reports only; false sends none.
# enabled = true
# organization-name in the report; empty: server.hostname.
organization = ""
# contact-info (an address; its domain names mxg as report sender).
# Empty: the postmaster address ([dsn] postmaster). With mail reports
# it and d= must be fully qualified: not localhost.
contact = ""
# From of report mail; empty: the contact address.
from_address = ""
# DKIM for report mail (RFC 8460 §3): d= (empty: the From domain), s=
# and a PEM RSA private key (at least 1024 bits; 2048 advised).
dkim_domain = ""
dkim_selector = ""
# dkim_key = "/etc/mxg/dkim-tlsrpt.pem"
# The UTC hour after which the previous day's reports go out.
send_hour = 1
# Reports to one destination (mail domain or web host) per hour.
max_per_destination = 100
# An https POST's time limit, and tries of a destination before giving up.
http_timeout = "30s"
max_tries = 5

[log]
# debug | info | warning | error
level = "info"
# text | json
format = "text"
# Empty: standard error.
# file = "/var/log/mxg.log"

[web]
# The web surface for operators (/health, /ready, the admin API). Off
# while listen is empty.
# HTTPS with tls_cert and tls_key; plain HTTP only on loopback behind a
# reverse proxy (docs/operations.md, "Web surface").
listen = []
# tls_cert = "/etc/mxg/web-cert.pem"
# tls_key = "/etc/mxg/web-key.pem"
# Reverse proxies in front whose X-Forwarded-For/-Proto are believed.
proxy_hops = 0
# Path prefix the proxy publishes the surface under, e.g. "/mxg".
root_path = ""
# Where senders reach the surface, as the links in decision notices carry it
# (with the proxy's prefix), e.g. "https://mail-gw.example.org". Never taken
# from a request's headers. Empty: notices carry no link.
public_url = ""

# The admin API (/api/v1/) and the operator pages (/ui/) need a bearer token
# (docs/admin-api.md); `mxg web token NAME --role read|admin` makes one
# and prints its table, which holds only the token's SHA-256:
# [[web.token]]
# name = "ops-alice"
# role = "admin"
# sha256 = "<64 hex>"
# Client certificates instead, verified against client_ca (HTTPS only):
# client_ca = "/etc/mxg/operators-ca.pem"
# [[web.certificate]]
# subject = "CN=ops-bob,O=Example Agency"   # or sha256 = "<64 hex>"
# role = "read"
# How long a login to the operator pages (/ui/) lasts.
session_lifetime = "8h"

[decisions]
# Sender decisions (on_unmet = "ask-sender", docs/sender-decisions.md).
# How long a notice's link works (never beyond the message's lifetime).
token_lifetime = "7d"
# A directory whose notice.txt, notice-subject.txt, page.html, result.html
# and refused.html replace the shipped templates.
# templates = "/etc/mxg/templates"
# Requests per client address and minute to /decide/ (then 429), and the
# largest request body read (then 413).
rate_limit = 30
max_body = 16384

[metrics]
# Prometheus /metrics with /health and /ready, without authentication: for
# a monitoring network only, e.g. ["10.1.2.3:9187"]. Off while listen is empty.
listen = []
# tls_cert = "/etc/mxg/metrics-cert.pem"
# tls_key = "/etc/mxg/metrics-key.pem"

# Per-domain policy, one [[policy]] table per domain (none by default):
# [[policy]]
# domain = "partner.example"
# min_level = "qualified"            # raises, never lowers, the level
# methods = ["pinned", "dane-ee"]    # what counts as qualified here
# pins = ["spki-sha256:<64 hex>"]    # or "cert-sha256:<64 hex>"; must match
# mx = ["mail.partner.example", "*.mx.partner.example"]
# ca_file = "/etc/mxg/partner-ca.pem"  # a private CA pin (method pinned)
# cert_names = ["mail.partner.example"] # names its certificates may carry

[classify]
# Class of a message no rule raises: normal | high | secret.
default_class = "normal"
# A header the internal server or the sender's client sets to normal, high or
# secret; removed before delivery unless strip_marker = false.
marker_header = "X-MXG-Risk"
strip_marker = true
# RFC 8689: honour "TLS-Required: No" for class normal (level becomes
# opportunistic); never for high or secret.
honour_tls_required_no = false
# With on_unmet = "reject", how long the client waits at the end of DATA for
# the verdict; past it the message is accepted and handled afterwards.
verdict_deadline = "10s"
# Content scanning limits: decoded text scanned per message, MIME nesting, parts.
max_scan_bytes = 8388608
max_depth = 16
max_parts = 512

# What each class needs (DSK guidance) and what happens when a recipient cannot
# get it: reject (at end of DATA when known then, else bounce) | defer (retry
# until queue.max_lifetime) | bounce | hold (until `mxg queue release`) |
# reroute (to the fallback relay `reroute`, at `reroute_level`) | ask-sender
# (park the recipient and ask the sender: docs/sender-decisions.md).
[classes.normal]
level = "encrypted"
on_unmet = "defer"
require_e2e = false
# Level for content that is already S/MIME or PGP/MIME encrypted ("" = level).
e2e_level = ""
reroute = ""
reroute_level = "encrypted"
# ask-sender: ask at once when the domain offers no way to authenticate its
# servers; else after this many attempts or this long after receipt.
ask_after_attempts = 3
ask_after = "1h"
# ask-sender: the choices offered besides keep trying and cancel: confirm
# normal risk (the message goes at class normal's level; never for secret),
# and the secure envelope.
allow_normal_risk = false
allow_envelope = true
# Level of a secure envelope's carrier mail (its content is sealed).
carrier_level = "encrypted"

[classes.high]
level = "qualified"
on_unmet = "ask-sender"
require_e2e = false
e2e_level = ""
reroute = ""
reroute_level = "encrypted"
ask_after_attempts = 3
ask_after = "1h"
allow_normal_risk = true
allow_envelope = true
carrier_level = "encrypted"

[classes.secret]
level = "qualified"
on_unmet = "reject"
# Secrets (§203 StGB) travel end-to-end encrypted as a rule.
require_e2e = true
e2e_level = ""
reroute = ""
reroute_level = "encrypted"
ask_after_attempts = 3
ask_after = "1h"
# Never true: secrets are not sent at class normal's level on a sender's word.
allow_normal_risk = false
allow_envelope = true
carrier_level = "encrypted"

# Sender groups for rules ("group:finance"): addresses or domains.
[groups]
# finance = ["*@kasse.example.org", "buchhaltung@example.org"]

# Rules, in order; the highest class any rule yields wins. Every condition a
# rule gives must hold. (None by default.)
# [[rule]]
# name = "health office"
# class = "high"
# sender = ["*@gesundheitsamt.example.org", "group:finance"]
# recipient = ["*.klinik.example"]          # the class applies to these recipients
# header = { name = "Sensitivity", values = ["Private", "Company-Confidential"] }
# subject_tag = "[vertraulich]"             # strip_tag = true removes it
# detector = "iban"                         # iban | tax-id | card | kvnr
# keywords = ["Diagnose", "Befund"]         # or patterns = ["AZ-[0-9]{4}"]
# min_count = 2                             # distinct values found
# attachment = ["*.xlsx", "application/pdf"]
# e2e = false                               # content (not) end-to-end encrypted

[run]
# asyncio (with uvloop) | trio
backend = "asyncio"
# When started as root: the user to become after binding.
user = ""
"""
