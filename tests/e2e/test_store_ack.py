"""Rule 9 on PostgreSQL (docs/cluster.md, "Bodies before the 250"): the
250 comes only once the message and its spool file's exact bytes are
committed in PostgreSQL; a message whose commit fails gets 451 and is
never delivered; and a PostgreSQL restart under load costs the clients
4xx replies while it is down, never an acknowledged message."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import on_both_stores
from tests.e2e.test_classes import OPPORTUNISTIC_NORMAL, message, send
from tests.e2e.test_delivery import wait_for
from tests.support.load import Load
from tests.support.mxgproc import MxgProcess
from tests.support.outage import delivered, tally, through_outage
from tests.support.postgres import Postgres, Server, migrated
from tests.support.sinks import Sink

pytestmark = pytest.mark.e2e

TOTAL = 2000


@pytest.fixture
def mxg_store(request: pytest.FixtureRequest) -> str:
    """SQLite, the session's PostgreSQL, or (``private``) a server of
    this test's own that it may restart."""
    if request.param == "private":
        _, pg = request.getfixturevalue("private_postgres")
        return migrated(pg.new_database())
    return on_both_stores(request)


def _hold_recipients(sinks: dict[str, Sink]) -> None:
    """Recipients named hold* are deferred by the receiving servers, so
    their messages stay unfinished (and their stored bodies with them)."""
    for name in ("good1", "good2"):
        sinks[name].rcpt_policy = lambda r: "450 4.2.0 busy" if r.startswith("hold") else None


def _send(port: int, mid: str, rcpt: str, extra: str = "") -> tuple[int, str]:
    """One message; the reply to its end of data."""
    text = f"Message-ID: {mid}\r\n{extra}Subject: rule 9\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
        c.ehlo("client.test")
        c.mail("client@internal.test")
        c.rcpt(rcpt)
        code, reply = c.data(text)
    return code, reply.decode()


@pytest.mark.parametrize("mxg_store", ["sqlite", "postgresql"], indirect=True)
def test_rule9_the_250_comes_after_the_body_is_stored(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], mxg_store: str, tmp_path: Path
) -> None:
    _hold_recipients(sinks)
    mxg = make_mxg()
    code, reply = _send(mxg.port, "<rule9-1@internal.test>", "hold@good.test")
    assert code == 250, reply
    qid = reply.rsplit(" ", 1)[-1]
    spooled = tmp_path / "data" / "spool" / "queue" / qid
    # Read at once after the 250, before anything else could happen.
    if mxg_store:
        with psycopg.connect(mxg_store) as db:
            row = db.execute("SELECT raw FROM spool_bodies WHERE queue_id = %s", (qid,)).fetchone()
        assert row is not None, "the 250 came before the body was in PostgreSQL"
        assert bytes(row[0]) == spooled.read_bytes(), "stored: the spool file's exact bytes"
    else:
        assert spooled.read_bytes().startswith(b"MXG1 "), "on SQLite: the fsynced spool file"


@pytest.mark.parametrize("mxg_store", ["postgresql"], indirect=True)
def test_rule9_a_message_whose_commit_fails_gets_451_and_is_never_delivered(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], mxg_store: str, tmp_path: Path
) -> None:
    # A check PostgreSQL runs at COMMIT (a deferred constraint trigger):
    # the transaction with the marked message fails when it commits.
    with psycopg.connect(mxg_store, autocommit=True) as db:
        db.execute(
            "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF position('X-Fail-Commit'::bytea IN NEW.raw) > 0 THEN"
            " RAISE EXCEPTION 'commit refused by the test'; END IF; RETURN NULL; END $$"
        )
        db.execute(
            "CREATE CONSTRAINT TRIGGER refuse_marked AFTER INSERT ON spool_bodies"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_marked()"
        )
    mxg = make_mxg()
    code, reply = _send(
        mxg.port, "<failed@internal.test>", "u1@good.test", extra="X-Fail-Commit: yes\r\n"
    )
    assert (code, reply[:5]) == (451, "4.3.0"), reply
    code, reply = _send(mxg.port, "<fine@internal.test>", "u2@good.test")
    assert code == 250, reply
    wait_for(lambda: "<fine@internal.test>" in delivered(sinks), what="the next message sent")
    time.sleep(1.5)  # several scans: nothing brings the failed one back
    assert "<failed@internal.test>" not in delivered(sinks)
    assert "cannot store arrived messages: answered 451" in mxg.log_text()
    with psycopg.connect(mxg_store) as db:
        rows = db.execute("SELECT queue_id FROM messages").fetchall()
    assert len(rows) == 1, "only the acknowledged message is in the store"
    assert list((tmp_path / "data" / "spool" / "queue").iterdir()) == []


@pytest.mark.parametrize("mxg_store", ["private"], indirect=True)
@pytest.mark.parametrize("stop", ["fast", "immediate"])
def test_rule9_a_postgresql_restart_under_load_loses_no_acknowledged_message(
    make_mxg: Callable[..., MxgProcess],
    sinks: dict[str, Sink],
    private_postgres: tuple[Server, Postgres],
    mxg_store: str,
    stop: str,
) -> None:
    """``fast``: PostgreSQL ends every session and shuts down cleanly;
    ``immediate``: it crashes (commits that did not wait for the WAL
    flush may be lost; the 250s waited for theirs)."""
    server, _ = private_postgres
    mxg = make_mxg()

    def restart(load: Load) -> tuple[int, int]:
        server.stop(stop)
        down_at = len(load.acked)
        time.sleep(4)
        during = len(load.acked)
        server.start()
        return down_at, during

    load, (down_at, during) = through_outage(mxg, sinks, TOTAL, restart, recovery=600, delivery=300)
    # Without a restart of mxg: the repair after PostgreSQL's restart
    # lets every finished message leave the spool (rule 11).
    spool = mxg.workdir / "data" / "spool" / "queue"
    try:
        wait_for(lambda: not any(spool.iterdir()), timeout=120, what="the spool emptied")
    except AssertionError:
        left = sorted(p.name for p in spool.iterdir())
        with psycopg.connect(mxg_store) as db:
            rows = db.execute(
                "SELECT m.queue_id, m.state, r.status FROM messages m"
                " LEFT JOIN recipients r USING (queue_id) WHERE m.queue_id = ANY(%s)",
                (left,),
            ).fetchall()
        raise AssertionError(
            f"{len(left)} spool files left, in the store: {rows[:20]}\n" + mxg.log_text()[-6000:]
        ) from None
    time.sleep(2)  # stragglers, before counting duplicates
    log = mxg.log_text()
    counted = tally(sinks, log)
    got, duplicates, requeued = counted.got, counted.duplicates, counted.requeued
    refusals = dict(sorted(load.replies.items()))
    report = (
        f"PostgreSQL {stop} restart report: sent {TOTAL}, acknowledged {len(load.acked)}"
        f" ({down_at} before the stop, {during - down_at} while it was down),"
        f" 4xx replies {refusals}, connections cut {load.cut_off},"
        f" delivered {len(got)} distinct, duplicates {duplicates}"
        f" (re-queued after the restart {requeued}),"
        f" delivered without acknowledgement {len(set(got) - load.acked)}, lost 0"
    )
    print(report)
    (mxg.workdir / "restart-report.txt").write_text(report + "\n")
    assert "store unreachable: refusing mail with 451" in log
    assert "store reachable again" in log
    assert any(400 <= code < 500 for code in load.replies), "4xx while PostgreSQL was down"
    assert during == down_at, "no 250 while PostgreSQL was down"
    assert not load.refused and not load.unsent
    assert len(load.acked) == TOTAL, "the relay recovered by itself"
    assert load.acked <= set(got)
    assert set(got) <= load.acked
    # Each recipient here is a message's only one: a message arrives twice
    # only when the store lost its result and the repair sent it again.
    assert duplicates <= requeued
    assert not any(spool.iterdir())


@pytest.mark.parametrize("mxg_store", ["sqlite", "postgresql"], indirect=True)
def test_rule9_a_refusing_class_still_refuses_and_nothing_is_stored(
    make_mxg: Callable[..., MxgProcess], sinks: dict[str, Sink], mxg_store: str
) -> None:
    """On PostgreSQL a class that rejects decides before the message is
    stored: its 550 leaves nothing behind, and a message refused for one
    domain only is stored, acknowledged and bounced for that domain."""
    mxg = make_mxg(extra=OPPORTUNISTIC_NORMAL + '[classes.high]\non_unmet = "reject"\n')
    code, text = send(mxg.port, ["bob@dane.test"], message("bob@dane.test", risk="secret"))
    assert code == 550, text
    assert "requires end-to-end encrypted content" in text
    rcpts = ["bob@dane.test", "carol@pkixplain.test"]
    code, text = send(mxg.port, rcpts, message(", ".join(rcpts), risk="high"))
    assert code == 250, text
    wait_for(lambda: sinks["dane"].messages, what="delivery to dane.test")
    wait_for(lambda: sinks["sender"].messages, what="the DSN for pkixplain.test")
    assert len(sinks["dane"].messages) == 1, "the refused message went nowhere"
    if mxg_store:
        with psycopg.connect(mxg_store) as db:
            (stored,) = db.execute("SELECT count(*) FROM messages").fetchone() or (0,)
        # The accepted message and its DSN; nothing of the refused one.
        assert stored == 2
