"""Doubles for the pipeline's unit tests: an engine that records what it is
handed, a resolver with fixed routes, and a context around a real store."""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from mxg.boundary import (
    Arrived,
    DeliveryDone,
    Envelope,
    Received,
    Recipient,
    RecipientResult,
    decode_envelope,
    encode,
)
from mxg.config import Config
from mxg.dns import Host, Policy, ResolveError, Route
from mxg.errors import MessageNotFound
from mxg.pipeline.context import Context
from mxg.pipeline.controller import Stages
from mxg.store import Store, now_ms
from mxg.verdict import Feasibility

ROUTES = {
    "plain.test": Route("plain.test", [Host("mx.plain.test", ["127.0.0.2"])]),
    "other.test": Route("other.test", [Host("mx.other.test", ["127.0.0.3"])]),
}


class FakeEngine:
    """Records jobs, verdicts, injected DSNs and removals; holds spooled
    messages in a dict."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.crossings = 0
        self.verdicts_sent: list[dict[str, Any]] = []
        self.injected: list[tuple[Envelope, bytes]] = []
        self.spool: dict[str, tuple[Envelope, bytes]] = {}
        self.removed: list[str] = []
        self.reloaded: dict[str, Any] | None = None
        self.intake = ("open", "")
        self.max_per_destination: int | None = None
        # Sessions that stopped waiting for their verdicts.
        self.gone: set[str] = set()
        self._ids = itertools.count(1)

    def fileno(self) -> int:
        return -1

    def drain(self) -> bytes:
        return b"[]"

    def submit(self, jobs_json: str) -> None:
        self.crossings += 1
        self.jobs += json.loads(jobs_json)

    def verdicts(self, verdicts_json: str) -> list[bool]:
        got = json.loads(verdicts_json)
        self.verdicts_sent += got
        # A session that stopped waiting refuses its verdict.
        return [v["queue_id"] not in self.gone for v in got]

    def inject(self, envelope_json: str, message: bytes) -> str:
        env = decode_envelope(envelope_json)
        env.queue_id = f"DSN{next(self._ids):013d}"
        self.injected.append((env, message))
        self.spool[env.queue_id] = (env, message)
        return encode(env)

    def read(self, queue_id: str) -> tuple[str, bytes]:
        if queue_id not in self.spool:
            raise MessageNotFound(queue_id)
        env, message = self.spool[queue_id]
        return encode(env), message

    def read_envelope(self, queue_id: str) -> str:
        return self.read(queue_id)[0]

    def read_raw(self, queue_id: str) -> bytes:
        """The spool file's bytes as the real engine writes them."""
        envelope_json, message = self.read(queue_id)
        head = envelope_json.encode()
        return b"MXG1 %d\n%s\n%s" % (len(head), head, message)

    def read_raw_many(self, queue_ids: list[str]) -> list[bytes | None]:
        return [self.read_raw(q) if q in self.spool else None for q in queue_ids]

    def restore(self, raw: bytes) -> str:
        first, rest = raw.split(b"\n", 1)
        length = int(first.split()[1])
        env = decode_envelope(rest[:length].decode())
        self.spool[env.queue_id] = (env, rest[length + 1 :])
        return env.queue_id

    def set_intake(self, mode: str, text: str) -> None:
        self.intake = (mode, text)

    def set_max_per_destination(self, limit: int) -> None:
        self.max_per_destination = limit

    def remove(self, queue_id: str) -> None:
        self.spool.pop(queue_id, None)
        self.removed.append(queue_id)

    def remove_many(self, queue_ids: list[str]) -> list[str]:
        for q in queue_ids:
            self.remove(q)
        return queue_ids

    def spool_ids(self) -> list[str]:
        return sorted(self.spool)

    def reload(self, config_json: str) -> list[str]:
        self.reloaded = json.loads(config_json)
        return []


class FakeResolver:
    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes = ROUTES if routes is None else routes
        self.asked: list[str] = []

    async def route(self, domain: str) -> Route:
        self.asked.append(domain)
        if domain not in self.routes:
            raise ResolveError(domain, f"{domain}: no such domain (NXDOMAIN)", permanent=True)
        return self.routes[domain]

    def cached(self, domain: str) -> Route | None:
        return self.routes.get(domain)


async def no_sts(domain: str) -> Policy | None:
    return None


# Where `stages` puts the store: set per test by tests/pipeline/conftest.py
# (both stores); the SQLite file in tmp_path when unset.
STORE_AT: dict[str, Path | str] = {}


def stages(
    tmp_path: Path,
    toml: str = "",
    resolver: FakeResolver | None = None,
    engine: FakeEngine | None = None,
) -> tuple[Stages, FakeEngine]:
    cfg = Config.model_validate(tomllib.loads(toml))
    engine = engine or FakeEngine()
    res = resolver or FakeResolver()
    ctx = Context(
        cfg,
        engine,
        Store(STORE_AT.get("at") or tmp_path / "queue.db"),
        res,
        None,
        Feasibility(cfg, res, no_sts),
    )
    return Stages.build(ctx), engine


def envelope(qid: str, rcpts: list[str], **extra: Any) -> Envelope:
    fields: dict[str, Any] = {
        "queue_id": qid,
        "received_ms": now_ms(),
        "sender": "sender@internal.test",
        "size": 100,
        "origin": "smtp",
        "client_addr": "127.0.0.1",
        "message_id": f"<{qid}@internal.test>",
        "recipients": [Recipient(r) for r in rcpts],
        **extra,
    }
    return Envelope(**fields)


def reported(job: dict[str, Any], status: str, code: int, enhanced: str, text: str) -> DeliveryDone:
    """The engine's report of a job the fake engine was handed: every
    recipient with the same result, from mx.plain.test over TLS."""
    results = [
        RecipientResult(
            r["address"], status, code, enhanced, text, "mx.plain.test", "127.0.0.2", "encrypted"
        )
        for r in job["recipients"]
    ]
    return DeliveryDone(job["job_id"], job["queue_id"], job["destination"], results, [], 0, 0)


def sent(job: dict[str, Any]) -> DeliveryDone:
    return reported(job, "sent", 250, "2.0.0", "queued")


def bounced(job: dict[str, Any]) -> DeliveryDone:
    return reported(job, "bounced", 550, "5.1.1", "no such user")


async def dispatched(
    st: Stages, engine: FakeEngine, queue_ids: list[str], body: bytes
) -> list[dict[str, Any]]:
    """Messages that arrived at the end of DATA (`Arrived`: a PostgreSQL
    store acknowledges them), each to one recipient at plain.test, stored
    and dispatched; their jobs, by queue id."""
    arrived = []
    for q in queue_ids:
        env = envelope(q, [f"{q.lower()}@plain.test"])
        engine.spool[q] = (env, body)
        arrived.append(Arrived(env, {}))
    await st.handle(arrived)
    with anyio.fail_after(20):
        while len(engine.jobs) < len(queue_ids):
            await anyio.sleep(0.01)
    return sorted(engine.jobs, key=lambda j: str(j["queue_id"]))


def received(env: Envelope) -> Received:
    return Received(env, {})


def serving(st: Stages, body: Callable[[], Awaitable[None]]) -> None:
    """Runs `body` while the stages serve (a task group is set), then lets
    the tasks it started finish."""

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            st.ctx.tg = tg
            await body()
            await anyio.sleep(0.05)
            st.ctx.tg = None

    anyio.run(main)
