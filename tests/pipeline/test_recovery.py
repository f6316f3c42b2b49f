"""Recovery (rule 10): what the spool holds and the index does not know is
indexed again and goes out."""

from __future__ import annotations

from pathlib import Path

import anyio

from mxg.pipeline.recovery import recover
from mxg.store import NewMessage
from tests.pipeline.fakes import envelope, serving, stages


def test_rule10_spooled_messages_unknown_to_the_index_are_requeued(tmp_path: Path) -> None:
    """On SQLite every spooled message the index does not know is indexed
    again. On PostgreSQL a client's message gets its 250 only once the
    store has it, so one the store does not know was never acknowledged:
    its file goes (the client sends it again); what mxg spooled itself
    (origin local: a DSN) is indexed as on SQLite."""
    st, engine = stages(tmp_path)
    engine.spool["Q1"] = (envelope("Q1", ["a@plain.test"]), b"Subject: x\r\n\r\nx\r\n")
    engine.spool["Q2"] = (envelope("Q2", ["b@plain.test"]), b"Subject: y\r\n\r\ny\r\n")
    dsn = envelope("D1", ["sender@plain.test"], origin="local", sender="")
    engine.spool["D1"] = (dsn, b"Subject: dsn\r\n\r\nz\r\n")
    st.ctx.store.add_messages([NewMessage(envelope("Q2", ["b@plain.test"]))])

    anyio.run(recover, st.ctx, st.intake, st.outcomes, st.notices, st.finisher)
    postgres = st.ctx.store.dialect.postgres
    indexed = {"Q2", "D1"} if postgres else {"Q1", "Q2", "D1"}
    assert st.ctx.store.known_ids() == indexed
    assert ("Q1" in engine.removed) is postgres
    assert set(engine.spool) == indexed

    async def body() -> None:
        st.dispatch.dispatch_due()

    serving(st, body)
    assert sorted(j["queue_id"] for j in engine.jobs) == sorted(indexed)
