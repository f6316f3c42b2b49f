"""Intake: classified once, indexed with the class, at-once outcomes."""

from __future__ import annotations

from pathlib import Path

from tests.pipeline.fakes import envelope, received, serving, stages

RULE = """
[[rule]]
name = "clinic"
class = "high"
recipient = ["*@plain.test"]
"""


def test_received_messages_are_indexed_with_their_class_per_recipient(tmp_path: Path) -> None:
    st, engine = stages(tmp_path, RULE)

    async def body() -> None:
        await st.handle([received(envelope("Q1", ["a@plain.test", "b@other.test"]))])

    serving(st, body)
    rows = st.ctx.store.recipients("Q1")
    assert [r["class"] for r in rows] == ["high", "normal"]
    assert st.ctx.store.message("Q1")["class"] == "high"
    levels = {j["destination"]: j["tls"]["level"] for j in engine.jobs}
    # The message's class sets the requirement of every recipient's job.
    assert levels["plain.test"] == "qualified"


def test_recipients_refused_at_the_end_of_data_bounce_at_intake(tmp_path: Path) -> None:
    st, engine = stages(tmp_path, '[classes.normal]\non_unmet = "reject"\n')
    st.intake._early.remember("Q1", {1: "class normal needs level encrypted: out of reach"})

    async def body() -> None:
        await st.handle([received(envelope("Q1", ["a@plain.test", "b@other.test"]))])

    serving(st, body)
    statuses = [r["status"] for r in st.ctx.store.recipients("Q1")]
    assert statuses == ["pending", "bounced"]
    assert [j["destination"] for j in engine.jobs] == ["plain.test"]
