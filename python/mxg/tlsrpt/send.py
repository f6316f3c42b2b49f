"""Sending one day's reports: for each policy domain with sessions that
day (no traffic, no report), its ``_smtp._tls`` record is looked up and
the report goes to each destination once, recorded in the store
(``tlsrpt_sent``) so that a restart does not send it again.

A destination that fails is tried again later (`RETRY_MS`, at most
``[tlsrpt] max_tries`` times); one that refuses for good (an https 4xx)
is given up at once. At most ``max_per_destination`` reports go to one
destination (a mail domain or a web host) per hour; the rest wait for a
later run. Mail reports are handed to mxg's own queue (`Outbox`), which
retries and bounces them like any message."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mxg.config import Config
from mxg.deliverylog import event, log
from mxg.store.records import now_ms
from mxg.tlsrpt.mail import DkimKey, build_mail, sign
from mxg.tlsrpt.record import Discovery, LookupFailed, RecordError, Rua
from mxg.tlsrpt.report import Report, Reporter, build_report, report_id

# Waits before the 2nd, 3rd, ... try of a destination that failed.
RETRY_MS = (10 * 60_000, 30 * 60_000, 60 * 60_000, 2 * 3600_000, 4 * 3600_000)
HOUR_MS = 3600_000
# The mark of a domain without a usable record: looked up once per day.
NO_RECORD = ""
FINAL = ("sent", "gave-up", "no-record", "skipped")


class SendError(Exception):
    """A report did not reach a destination; `permanent` ones are not
    tried again."""

    def __init__(self, text: str, *, permanent: bool = False) -> None:
        super().__init__(text)
        self.permanent = permanent


class Outbox(Protocol):
    async def mail(self, message: bytes, sender: str, to: str, report: Report) -> str:
        """Queues the signed report mail; returns its queue id."""
        ...

    async def post(self, url: str, body: bytes) -> str:
        """POSTs the gzipped report; returns the server's status line."""
        ...


@dataclass(frozen=True)
class Settings:
    reporter: Reporter
    from_address: str
    hostname: str
    dkim: DkimKey | None
    max_per_destination: int
    max_tries: int


@dataclass
class Outcome:
    """What one run did for one destination, for the log and the CLI."""

    day: str
    domain: str
    rua: str
    status: str  # sent | failed | gave-up | skipped | no-record | waiting | done
    detail: str = ""


@dataclass
class RateLimit:
    """Reports per destination in the last hour, from the store's marks
    (so a restart does not reset it) and those of the run."""

    limit: int
    sent: Counter[str] = field(default_factory=Counter)

    @classmethod
    def since(cls, store: Any, limit: int, t_ms: int) -> RateLimit:
        rl = cls(limit)
        for row in store.tlsrpt_sent_since(t_ms - HOUR_MS):
            rua = row["rua"]
            rl.sent[_destination(rua)] += 1
        return rl

    def allow(self, destination: str) -> bool:
        return self.sent[destination] < self.limit

    def count(self, destination: str) -> None:
        self.sent[destination] += 1


def _destination(uri: str) -> str:
    from mxg.tlsrpt.record import _parse_uri  # noqa: PLC0415

    try:
        return _parse_uri(uri).destination
    except RecordError:
        return uri


class DaySender:
    def __init__(
        self,
        store: Any,
        settings: Settings,
        discovery: Discovery,
        outbox: Outbox,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._s = settings
        self._discovery = discovery
        self._outbox = outbox
        self._clock = clock

    def reports(self, day: str, domains: list[str] | None = None) -> list[Report]:
        return day_reports(self._store, self._s.reporter, day, domains)

    async def run(
        self,
        day: str,
        domains: list[str] | None = None,
        pause: Callable[[], Awaitable[None]] | None = None,
    ) -> list[Outcome]:
        """Sends what is due of the day's reports; returns what happened
        per destination. Only domains with sessions that day get one (no
        traffic, no report); a report is built only when a destination
        is due, so the runs that follow a day's sending stay cheap.
        `pause` is awaited between domains (the relay's own work first)."""
        now = self._clock()
        limit = RateLimit.since(self._store, self._s.max_per_destination, now)
        counted = self._store.tlsrpt_domains(day)
        if domains is not None:
            counted = [d for d in counted if d in set(domains)]
        outcomes: list[Outcome] = []
        for domain in counted:
            outcomes += await self._domain(day, domain, limit, now)
            if pause is not None:
                await pause()
        return outcomes

    async def _domain(self, day: str, domain: str, limit: RateLimit, now: int) -> list[Outcome]:
        marks = self._store.tlsrpt_marks(day, domain)
        if marks.get(NO_RECORD) is not None:
            return [Outcome(day, domain, "", "no-record", marks[NO_RECORD].detail)]
        rid = report_id(self._s.reporter, day, domain)
        try:
            ruas = await self._discovery.rua(domain)
        except LookupFailed as e:
            return [Outcome(day, domain, "", "waiting", str(e))]
        except RecordError as e:
            # §3: an invalid record means the domain does not take reports.
            self._mark((day, domain, rid), NO_RECORD, "no-record", f"invalid TLSRPT record: {e}")
            return [Outcome(day, domain, "", "no-record", f"invalid TLSRPT record: {e}")]
        if not ruas:
            self._mark((day, domain, rid), NO_RECORD, "no-record", "no _smtp._tls record")
            return [Outcome(day, domain, "", "no-record", "no _smtp._tls record")]
        out = []
        report: Report | None = None
        for rua in ruas:
            mark = marks.get(rua.uri)
            if mark is not None and mark.status in FINAL:
                out.append(Outcome(day, domain, rua.uri, "done", mark.status))
                continue
            if mark is not None and mark.next_ms > now:
                out.append(Outcome(day, domain, rua.uri, "waiting", "retry later"))
                continue
            if not limit.allow(rua.destination):
                out.append(Outcome(day, domain, rua.uri, "waiting", "rate limit"))
                continue
            if report is None:
                rows = self._store.tlsrpt_rows(day, domain)
                report = build_report(self._s.reporter, day, domain, rows)
            tries = mark.tries if mark is not None else 0
            out.append(await self._send(report, rua, tries, limit))
        return out

    async def _send(self, report: Report, rua: Rua, tries: int, limit: RateLimit) -> Outcome:
        day, domain = report.day, report.domain
        try:
            if rua.scheme == "mailto":
                if self._s.dkim is None:
                    detail = "mailto needs a DKIM key ([tlsrpt] dkim_key, RFC 8460 §3)"
                    self._mark((day, domain, report.report_id), rua.uri, "skipped", detail)
                    return Outcome(day, domain, rua.uri, "skipped", detail)
                message = sign(
                    build_mail(
                        report,
                        sender=self._s.reporter.sender,
                        from_address=self._s.from_address,
                        to=rua.target,
                        hostname=self._s.hostname,
                    ),
                    self._s.dkim,
                )
                qid = await self._outbox.mail(message, self._s.from_address, rua.target, report)
                detail = f"queued as {qid}"
            else:
                detail = await self._outbox.post(rua.target, report.gzipped)
        except SendError as e:
            status = "gave-up" if e.permanent or tries + 1 >= self._s.max_tries else "failed"
            retry = RETRY_MS[min(tries, len(RETRY_MS) - 1)]
            self._mark(
                (day, domain, report.report_id),
                rua.uri,
                status,
                str(e),
                next_ms=self._clock() + retry,
            )
            event(
                log,
                "TLS report not delivered",
                logging.WARNING,
                domain=domain,
                day=day,
                rua=rua.uri,
                error=str(e),
                status=status,
            )
            return Outcome(day, domain, rua.uri, status, str(e))
        limit.count(rua.destination)
        self._mark((day, domain, report.report_id), rua.uri, "sent", detail)
        event(log, "TLS report sent", domain=domain, day=day, rua=rua.uri, detail=detail)
        return Outcome(day, domain, rua.uri, "sent", detail)

    def _mark(
        self, of: tuple[str, str, str], rua: str, status: str, detail: str, *, next_ms: int = 0
    ) -> None:
        """Records what became of (day, domain, report id) at `rua`."""
        day, domain, rid = of
        self._store.mark_tlsrpt(
            day, domain, rua, report_id=rid, status=status, detail=detail[:500], next_ms=next_ms
        )


def reporter_of(cfg: Config) -> Reporter:
    """Who reports, from ``[tlsrpt]`` and its defaults."""
    t = cfg.tlsrpt
    return Reporter(t.organization or cfg.server.hostname, t.contact or cfg.postmaster)


def settings(cfg: Config) -> Settings:
    """The run's settings; raises MxgError when the DKIM key is unusable."""
    t = cfg.tlsrpt
    reporter = reporter_of(cfg)
    from_address = t.from_address or reporter.contact
    dkim = None
    if t.dkim_key is not None:
        domain = t.dkim_domain or from_address.rpartition("@")[2]
        dkim = DkimKey.load(t.dkim_key, domain, t.dkim_selector)
    return Settings(
        reporter=reporter,
        from_address=from_address,
        hostname=cfg.server.hostname,
        dkim=dkim,
        max_per_destination=t.max_per_destination,
        max_tries=t.max_tries,
    )


def day_reports(
    store: Any, reporter: Reporter, day: str, domains: list[str] | None = None
) -> list[Report]:
    """The day's reports, one per domain with sessions that day (no
    traffic, no report)."""
    wanted = store.tlsrpt_domains(day) if domains is None else domains
    out = []
    for d in wanted:
        rows = store.tlsrpt_rows(day, d)
        if rows:
            out.append(build_report(reporter, day, d, rows))
    return out


def pending(outcomes: list[Outcome]) -> bool:
    """Whether a later run has something left to do for the day."""
    return any(o.status in ("failed", "waiting") for o in outcomes)
