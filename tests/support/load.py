"""A sending mail server's part in a load test: threads that each send
messages over one SMTP connection, record which got a 250, and send
again later what got a 4xx or was cut off, as a real MTA does (RFC 5321
§4.5.4.1). A 5xx is final. With several relay ports (a cluster's nodes)
each thread starts at its own and moves to the next when one refuses
with a 4xx or is gone, as an MTA with several relayhosts does."""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Load:
    """`total` messages, `message(i)` gives the Message-ID and the text of
    the i-th, to `rcpt(i)`, over the relays on `ports`."""

    ports: list[int]
    total: int
    message: Callable[[int], tuple[str, str]]
    rcpt: Callable[[int], str]
    threads: int = 8
    sender: str = "load@internal.test"
    # How long a message is tried before it counts as not sent.
    give_up_after: float = 300.0
    # Between a 4xx (or a lost connection) and the next try.
    retry_pause: float = 0.2
    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    unsent: set[str] = field(default_factory=set)
    # Replies other than 250 by code (421 and 451 while the store is down).
    replies: Counter[int] = field(default_factory=Counter)
    # Connections that broke off (counted, then opened again).
    cut_off: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    _stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> Load:
        # Daemon threads, and `stop`: a test that fails while its load
        # still runs must not keep the interpreter from exiting (every
        # message left would be tried for `give_up_after`).
        workers = [
            threading.Thread(target=self._worker, args=(n,), daemon=True)
            for n in range(self.threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return self

    def stop(self) -> None:
        """No further message or retry; the threads end after the
        exchange they are in."""
        self._stopped.set()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total or self._stopped.is_set():
                return None
            self._next += 1
            return self._next - 1

    def _note(self, code: int) -> None:
        with self._lock:
            self.replies[code] += 1

    def _worker(self, n: int) -> None:
        port = n % len(self.ports)
        conn: smtplib.SMTP | None = None
        while (i := self._take()) is not None:
            mid, text = self.message(i)
            deadline = time.monotonic() + self.give_up_after
            while True:
                try:
                    if conn is None:
                        conn = smtplib.SMTP("127.0.0.1", self.ports[port], timeout=60)
                    conn.sendmail(self.sender, [self.rcpt(i)], text)
                    with self._lock:
                        self.acked.add(mid)
                    break
                except smtplib.SMTPResponseException as e:
                    self._note(e.smtp_code)
                    if e.smtp_code >= 500:
                        with self._lock:
                            self.refused.add(mid)
                        break
                    if e.smtp_code == 421:
                        conn = _closed(conn)
                    port = self._next_relay(port, conn)
                except smtplib.SMTPRecipientsRefused as e:
                    code = next(iter(e.recipients.values()))[0]
                    self._note(code)
                    if code >= 500:
                        with self._lock:
                            self.refused.add(mid)
                        break
                    port = self._next_relay(port, conn)
                except (smtplib.SMTPException, OSError):
                    with self._lock:
                        self.cut_off += 1
                    conn = _closed(conn)
                    port = self._next_relay(port, conn)
                if time.monotonic() > deadline or self._stopped.is_set():
                    with self._lock:
                        self.unsent.add(mid)
                    break
                time.sleep(self.retry_pause)
        _closed(conn)

    def _next_relay(self, port: int, conn: smtplib.SMTP | None) -> int:
        """The relay to try next: the same over an open connection or with
        one relay, else the next one."""
        if conn is not None or len(self.ports) == 1:
            return port
        return (port + 1) % len(self.ports)


def _closed(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()
