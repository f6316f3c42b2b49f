"""Which server of a multi-host store URL a connection tries first
(`postgresql://mxg@pg1,pg2/mxg?target_session_attrs=read-write`,
docs/cluster.md, "A failover manager, and how mxg finds the primary").

libpq tries the hosts in the order the URL gives, each for up to
`connect_timeout`. After a failover the first host is often the old
primary; when its host vanished (no reset, no refusal) every connection
of the relay paid that whole timeout on it at each reconnect before it
reached the new primary, one after the other. So this process keeps,
per URL, the order to try them in: the host a connection last reached
goes first, the host a connection was lost on goes last. The URL's own
order holds until something is known.

And the connections still open on a server another connection was lost
on are opened again before their next statement (`losses`): a vanished
host resets nothing, so each of them would otherwise wait out its own
`tcp_user_timeout` (10 s as docs/cluster.md sets it) when next used,
one after the other as the relay's stages reach them.

Measured by tests/e2e/test_store_failover.py (the primary's host
vanishes, the standby is promoted 2 s later): the first 250 came 25 s
after the promotion with neither, 18 s with the order alone, 8-9 s with
both: what is left is the first connection's 10 s `tcp_user_timeout`,
which began when the host vanished, 2 s before the promotion.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from psycopg.conninfo import conninfo_to_dict, make_conninfo

Host = tuple[str, str]  # host (or socket directory), port

# Per URL: its hosts, most likely primary first. Connections of several
# threads (the intake's, the results') share it.
_orders: dict[str, list[Host]] = {}
# Per URL, host and port: connections lost there (`losses`).
_losses: dict[tuple[str, str, int], int] = {}
_lock = threading.Lock()


def conninfo(url: str) -> str:
    """`url` as a connection string with its hosts in the order to try
    them; `url` itself when it names one host."""
    params = conninfo_to_dict(url)
    hosts = _hosts(params)
    if hosts is None:
        return url
    with _lock:
        order = _orders.setdefault(url, list(hosts))
        ranked = sorted(hosts, key=lambda h: order.index(h) if h in order else len(order))
    params["host"] = ",".join(h for h, _ in ranked)
    params["port"] = ",".join(p for _, p in ranked)
    return make_conninfo("", **params)


def reached(url: str, host: str, port: int) -> None:
    """A connection on `url` was opened on `host`:`port`: it is tried
    first."""
    _move(url, host, port, first=True)


def lost(url: str, host: str, port: int) -> None:
    """A connection on `url` was lost on `host`:`port`: it is tried
    last, and the other connections on it are opened again before their
    next statement (`losses`)."""
    with _lock:
        _losses[(url, host, port)] = _losses.get((url, host, port), 0) + 1
    _move(url, host, port, first=False)


def losses(url: str, host: str, port: int) -> int:
    """How many connections on `url` were lost on `host`:`port` so far.
    A connection that opened when there were fewer is on a server that
    may be gone: a vanished host resets nothing, and each idle connection
    would wait out its own timeout at its next statement. A connection
    ended alone (an operator's `pg_terminate_backend`) costs the others
    one reconnect each."""
    with _lock:
        return _losses.get((url, host, port), 0)


def _move(url: str, host: str, port: int, *, first: bool) -> None:
    with _lock:
        order = _orders.get(url)
        # A host written without its port has the default one.
        found = [h for h in order or () if h[0] == host and h[1] in (str(port), "")]
        if order is None or not found:
            return
        order.remove(found[0])
        order.insert(0 if first else len(order), found[0])


def _hosts(params: Mapping[str, object]) -> list[Host] | None:
    """The URL's hosts with their ports, when there are several and
    they can be reordered (no `hostaddr` list beside them)."""
    names = str(params.get("host") or "").split(",")
    if len(names) < 2 or "hostaddr" in params:
        return None
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(names)  # one port for every host (libpq)
    if len(ports) != len(names):
        return None  # libpq refuses it; let it say so
    return list(zip(names, ports, strict=True))
