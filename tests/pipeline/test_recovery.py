"""Recovery (rule 10): what the spool holds and the index does not know is
indexed again and goes out."""

from __future__ import annotations

from pathlib import Path

import anyio

from mxg.pipeline.recovery import recover
from mxg.store import NewMessage
from tests.pipeline.fakes import envelope, serving, stages


def test_rule10_spooled_messages_unknown_to_the_index_are_requeued(tmp_path: Path) -> None:
    st, engine = stages(tmp_path)
    engine.spool["Q1"] = (envelope("Q1", ["a@plain.test"]), b"Subject: x\r\n\r\nx\r\n")
    engine.spool["Q2"] = (envelope("Q2", ["b@plain.test"]), b"Subject: y\r\n\r\ny\r\n")
    st.ctx.store.add_messages([NewMessage(envelope("Q2", ["b@plain.test"]))])

    anyio.run(recover, st.ctx, st.intake, st.outcomes, st.notices, st.finisher)
    assert st.ctx.store.known_ids() == {"Q1", "Q2"}

    async def body() -> None:
        st.dispatch.dispatch_due()

    serving(st, body)
    assert sorted(j["queue_id"] for j in engine.jobs) == ["Q1", "Q2"]
