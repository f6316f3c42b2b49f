"""Readiness: whether the relay can take and deliver mail now, checked
cheaply part by part, each failure named.

- spool: the spool directory is a directory mxg can write, on a file
  system with space and inodes left;
- store: the queue index answers a read, and no results or messages wait
  for space in it (a full disk, see docs/operations.md);
- resolver: the configured resolver answers (the SOA of
  ``dns.dnssec_probe``), within `DNS_TIMEOUT`; the answer is kept for
  `DNS_KEEP` seconds so that frequent probes do not become DNS traffic.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import sniffio

from mxg.store import Store

# Below this much free space the spool is not ready: a message of a few
# KiB and its envelope would no longer fit with certainty.
MIN_FREE_BYTES = 1 << 20
DNS_TIMEOUT = 2.0
DNS_KEEP = 10.0


class Readiness:
    def __init__(
        self,
        spool_dir: Path,
        store: Store,
        store_backlog: Callable[[], str | None],
        dns_check: Callable[[], Awaitable[str | None]],
    ) -> None:
        self._spool_dir = spool_dir
        self._store = store
        self._store_backlog = store_backlog
        self._dns_check = dns_check

    async def problems(self) -> dict[str, str]:
        """Each part that is not usable, with why; empty when ready."""
        out: dict[str, str] = {}
        for part, problem in (
            ("spool", spool_problem(self._spool_dir)),
            ("store", self._store.usable() or self._store_backlog()),
            ("resolver", await self._dns_check()),
        ):
            if problem:
                out[part] = problem
        return out


def spool_problem(spool_dir: Path) -> str | None:
    """None when the spool can take a message; else what is wrong."""
    try:
        st = os.lstat(spool_dir)
        if not stat.S_ISDIR(st.st_mode):
            return f"{spool_dir} is not a directory"
        if not os.access(spool_dir, os.W_OK | os.X_OK):
            return f"{spool_dir} is not writable"
        fs = os.statvfs(spool_dir)
    except OSError as e:
        return f"{spool_dir}: {e.strerror or e}"
    if fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
        return f"no space left on the file system of {spool_dir}"
    if fs.f_files and fs.f_favail == 0:
        return f"no inodes left on the file system of {spool_dir}"
    return None


class DnsCheck:
    """Whether the resolver answers, asked at most every `DNS_KEEP`
    seconds; concurrent probes wait for one query."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._name = name
        self._clock = clock
        self._lock = anyio.Lock()
        self._until = 0.0
        self._problem: str | None = None

    async def __call__(self) -> str | None:
        async with self._lock:
            if self._clock() >= self._until:
                self._problem = await self._ask()
                self._until = self._clock() + DNS_KEEP
            return self._problem

    async def _ask(self) -> str | None:
        # The running loop's backend, named: dnspython keeps the first one
        # it detects for the whole process.
        backend = dns.asyncbackend.get_backend(sniffio.current_async_library())
        try:
            await self._resolver.resolve(
                self._name, "SOA", search=False, lifetime=DNS_TIMEOUT, backend=backend
            )
        except dns.exception.Timeout:
            return f"no answer for {self._name} SOA within {DNS_TIMEOUT:g}s"
        except dns.exception.DNSException as e:
            return f"{self._name} SOA: {e}"
        return None
