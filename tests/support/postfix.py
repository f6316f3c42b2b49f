"""A private Postfix instance (Debian package ``postfix``) for interop
tests and benchmarks: its own configuration, queue and log, on loopback.

Postfix's daemons run as the ``postfix`` user and need to traverse the
queue directory, so an instance lives in its own world-traversable
directory under /tmp rather than in pytest's private tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def available() -> bool:
    return shutil.which("postfix") is not None and Path("/etc/postfix/master.cf").exists()


# Postfix's TLS connection cache (smtp_tls_connection_reuse) needs the
# tlsproxy service, which Debian's master.cf does not list.
TLSPROXY = "tlsproxy unix - - n - 0 tlsproxy"


def _master_cf(listen: str, extra: tuple[str, ...] = ()) -> str:
    """Debian's master.cf with smtpd on ``listen`` and no chroot anywhere
    (a chroot would need copies of /etc files inside the queue), plus
    ``extra`` service lines."""
    out = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if not (line[:1].isalnum() and len(fields) >= 8):
            out.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = listen
        fields[4] = "n"
        out.append(" ".join(fields))
    return "\n".join([*out, *extra]) + "\n"


class Postfix:
    def __init__(
        self,
        name: str,
        listen_port: int,
        settings: dict[str, str],
        services: tuple[str, ...] = (),
    ) -> None:
        self.services = services
        self.root = Path(tempfile.mkdtemp(prefix=f"mxg-postfix-{name}-"))
        self.root.chmod(0o755)
        self.port = listen_port
        self.conf = self.root / "conf"
        self.maillog = self.root / "maillog"
        base = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "queue"),
            "data_directory": str(self.root / "data"),
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": "/tmp",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
        }
        base.update(settings)
        self.settings = base

    def prepare(self) -> None:
        """Writes configuration and creates the queue, without starting."""
        self.conf.mkdir()
        (self.root / "queue").mkdir()
        data = self.root / "data"
        data.mkdir()
        shutil.chown(data, "postfix")
        (self.conf / "main.cf").write_text(
            "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        )
        (self.conf / "master.cf").write_text(_master_cf(f"127.0.0.1:{self.port}", self.services))
        self._postfix("check")

    def foreground_command(self) -> list[str]:
        """The master in the foreground, so a caller can account its CPU."""
        return ["postfix", "-c", str(self.conf), "start-fg"]

    def start(self) -> Postfix:
        self.prepare()
        self._postfix("start")
        return self.wait_started()

    def wait_started(self) -> Postfix:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if "daemon started" in self.log():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postfix did not start:\n{self.log()}")

    def _postfix(self, *args: str) -> None:
        r = subprocess.run(
            ["postfix", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed: {r.stderr}\n{self.log()}")

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def statuses(self) -> list[str]:
        return re.findall(r"status=(\w+)", self.log())

    def queued_files(self) -> int:
        """Messages anywhere in Postfix's queue (cheaper than postqueue)."""
        root = self.root / "queue"
        return sum(
            len(files)
            for d in ("maildrop", "incoming", "active", "deferred", "hold")
            for _, _, files in os.walk(root / d)
        )

    def queue_empty(self) -> bool:
        r = subprocess.run(
            ["postqueue", "-c", str(self.conf), "-j"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return r.returncode == 0 and not r.stdout.strip()

    def stop(self) -> None:
        subprocess.run(
            ["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60, check=False
        )
        time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)
