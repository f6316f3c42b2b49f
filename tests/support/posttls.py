"""Postfix's posttls-finger run against the test world.

posttls-finger resolves through the C library and so through resolv.conf,
which cannot name a port: it runs in a private mount namespace where
resolv.conf points at the test world's Unbound on port 53 (``options
trust-ad``: glibc passes the AD bit on only when told to trust the
resolver)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def posttls_finger(
    workdir: Path,
    resolver: str,
    domain: str,
    port: int,
    level: str,
    ca_file: Path | None = None,
    probe_zone: str = "secure.test",
) -> str:
    """posttls-finger's output for ``domain`` at Postfix security ``level``
    (``dane``, ``encrypt``, ``dane-only``, ``verify``, ``secure``)."""
    finger = shutil.which("posttls-finger") or "/usr/sbin/posttls-finger"
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {resolver}\noptions trust-ad edns0\n")
    # Its own main.cf (MAIL_CONFIG), so a host's Postfix settings cannot
    # change the verdict: DNSSEC on, as DANE needs (RFC 7672 2.1).
    (workdir / "main.cf").write_text(
        "compatibility_level = 3.6\nsmtp_dns_support_level = dnssec\n"
        "smtp_host_lookup = dns\n"
        # The default probe asks for the root's NS, which the test world
        # does not serve; a failed probe turns DNSSEC off.
        f"dnssec_probe = ns:{probe_zone}\n"
    )
    # -a ipv4: the world has no IPv6 MX hosts here; -t/-T: connect and
    # command timeouts.
    argv = [finger, "-a", "ipv4", "-t", "5", "-T", "10", "-l", level]
    if ca_file is not None:
        argv += ["-F", str(ca_file)]
    argv.append(f"{domain}:{port}")
    script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"'
    r = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"MAIL_CONFIG": str(workdir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    return r.stdout + r.stderr
