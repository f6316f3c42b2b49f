"""The cluster on a PostgreSQL store (docs/cluster.md): each message has
an owner, the node that accepted it, and a node's scanner and recovery
see its own messages alone."""

from __future__ import annotations

import psycopg

from mxg.pipeline.storage import open_store
from mxg.store import Outcome
from tests.support.postgres import Postgres, migrated
from tests.test_store import envelope


def test_a_node_owns_what_it_indexes_and_its_queries_see_only_that(postgres: Postgres) -> None:
    url = migrated(postgres.new_database())
    n1, n2 = open_store(url, "n1"), open_store(url, "n2")
    try:
        n1.add_messages([envelope("Q1", ["a@x.test"])])
        n2.add_messages([envelope("Q2", ["b@y.test"])])
        with psycopg.connect(url) as c:
            owners = dict(c.execute("SELECT queue_id, node FROM messages").fetchall())
        assert owners == {"Q1": "n1", "Q2": "n2"}
        assert [d.queue_id for d in n1.due(10**15)] == ["Q1"]
        assert [d.queue_id for d in n2.due(10**15, limit=None, among=["Q1", "Q2"])] == ["Q2"]
        assert n1.resume_pending() == 1
        n2.record([Outcome("Q2", 0, "bounced", 550, "5.1.1", "no such user")])
        assert (n1.dsn_pending(), n2.dsn_pending()) == ([], ["Q2"])
        n1.record([Outcome("Q1", 0, "sent", 250, "2.0.0", "ok")])
        assert (n1.done_ids(), n2.done_ids()) == ({"Q1"}, set())
    finally:
        n1.close()
        n2.close()
