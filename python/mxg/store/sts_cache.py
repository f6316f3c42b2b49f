"""The MTA-STS policy cache kept across restarts (RFC 8461 §5.1): a
restart must not forget an enforce policy, or an attacker who blocks the
policy host wins."""

from __future__ import annotations

import json
from typing import Any

from mxg.store.db import Database


class StsPolicies(Database):
    """Saved MTA-STS policies with their expiry times."""

    def save_sts(self, policy: Any, expires: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sts_policies (domain, id, mode, mx, max_age, expires)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (domain) DO UPDATE SET id=excluded.id,"
                " mode=excluded.mode, mx=excluded.mx, max_age=excluded.max_age,"
                " expires=excluded.expires",
                (
                    policy.domain,
                    policy.id,
                    policy.mode,
                    json.dumps(list(policy.mx)),
                    policy.max_age,
                    expires,
                ),
            )

    def load_sts(self) -> list[tuple[dict[str, Any], float]]:
        rows = self.db.execute("SELECT * FROM sts_policies").fetchall()
        return [
            (
                {
                    "domain": r["domain"],
                    "id": r["id"],
                    "mode": r["mode"],
                    "mx": tuple(json.loads(r["mx"])),
                    "max_age": r["max_age"],
                },
                r["expires"],
            )
            for r in rows
        ]
