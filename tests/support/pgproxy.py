"""A TCP proxy in front of a PostgreSQL server that cuts connections at
chosen moments, as PostgreSQL ending a session (a ``fast`` shutdown,
`pg_terminate_backend`) or the network would: after the server
committed but before its answer reaches the client (the client cannot
tell whether its transaction committed), or when the client sends a
given statement. It can also hold a statement's answer back, so that a
test acts while that statement is under way, and play a server that is
down (`refuse`: every connection ends, new ones end at once)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator

# The server's CommandComplete for a COMMIT: tag 'C', the length (itself
# and "COMMIT\0"), the tag text (PostgreSQL protocol, "Message Formats").
COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"
# The start of the intake's commit of received messages, one statement
# that is its own transaction (store/intake.py, `received_statement`).
RECEIVED_STATEMENT = b"WITH m AS (INSERT INTO messages"
# The longest pattern a test arms.
_PATTERN_MAX = 256


class CuttingProxy:
    """Listens on a free loopback port and forwards every connection to
    the server at `port`. Once armed (`lose_next_commit_answer`,
    `lose_answer_when_sent`, `cut_when_sent`), the first connection that carries the pattern is
    closed on both sides instead of forwarding it (`cut` is set then).
    After `hold_answer_when_sent`, the first connection whose client
    sends the pattern gets no answer until `release` (`held` is set
    once the server answered)."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        # What cuts the next connection that carries it: the server's
        # answers (True) or the client's statements, and the bytes.
        self._trigger: tuple[bool, bytes] | None = None
        self.cut = threading.Event()
        # What holds the answers on the next connection that sends it.
        self._hold: bytes | None = None
        # What cuts the next connection that sends it at the server's
        # answer (`lose_answer_when_sent`).
        self._lose: bytes | None = None
        self.held = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        # The server's ends of the connections `cut_clients` ended: kept
        # open (closing one would tell the server), shut at `close`.
        self._ghosts: list[socket.socket] = []
        # Per connection: open unless its answers are held.
        self._gates: list[threading.Event] = []
        # While set, the server is down: a new connection ends at once.
        self._down = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """`url` (a store URL on the server) through this proxy."""
        return re.sub(r"@([^:/]+):\d+/", f"@127.0.0.1:{self.port}/", url, count=1)

    def lose_next_commit_answer(self) -> None:
        self._arm(answers=True, pattern=COMMIT_DONE)

    def lose_answer_when_sent(self, pattern: bytes) -> None:
        """The first connection whose client sends `pattern` is cut when
        the server answers it: a statement that is its own transaction
        (committed by the server before it answers) whose answer is lost."""
        assert len(pattern) <= _PATTERN_MAX
        with self._lock:
            self.cut.clear()
            self._lose = pattern

    def cut_when_sent(self, pattern: bytes) -> None:
        assert len(pattern) <= _PATTERN_MAX
        self._arm(answers=False, pattern=pattern)

    def hold_answer_when_sent(self, pattern: bytes) -> None:
        assert len(pattern) <= _PATTERN_MAX
        with self._lock:
            self.held.clear()
            self._hold = pattern

    def release(self) -> None:
        """The answers held go on."""
        with self._lock:
            for gate in self._gates:
                gate.set()

    def cut_all(self) -> None:
        """Every connection open now ends (its session with it)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _shut(*pair)

    def cut_clients(self) -> None:
        """Every connection open now ends on the client's side alone, as a
        network partition leaves it: the server hears nothing, and its
        sessions (their locks with them) stay until it writes to them."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._ghosts.extend(server for _, server in pairs)
        for client, _ in pairs:
            _shut(client)

    def refuse(self) -> None:
        """The server is down (a restart under way): the connections open
        now end, and every new one ends before the server answers, as a
        connect to a stopped server fails. Until `accept`."""
        with self._lock:
            self._down = True
        self.cut_all()

    def accept(self) -> None:
        """The server is back: connections are forwarded again."""
        with self._lock:
            self._down = False

    def close(self) -> None:
        self._listener.close()
        self.release()
        self.cut_all()
        with self._lock:
            ghosts, self._ghosts = self._ghosts, []
        _shut(*ghosts)

    def _arm(self, *, answers: bool, pattern: bytes) -> None:
        with self._lock:
            self.cut.clear()
            self._trigger = (answers, pattern)

    def _fires(self, answers: bool, tail: bytes, data: bytes) -> bool:
        """Whether the cut armed for this direction ends in `data`."""
        with self._lock:
            if self._trigger is None or self._trigger[0] != answers:
                return False
            if not _ends_in(self._trigger[1], tail, data):
                return False
            self._trigger = None
            self.cut.set()  # before the client can see the cut
            return True

    def _dooms(self, tail: bytes, data: bytes, doomed: threading.Event) -> None:
        """Sets `doomed` when the client's `data` ends the pattern whose
        answer is to be lost."""
        with self._lock:
            if self._lose is None or not _ends_in(self._lose, tail, data):
                return
            self._lose = None
            doomed.set()

    def _holds(self, tail: bytes, data: bytes, gate: threading.Event) -> None:
        """Closes `gate` when the client's `data` ends the pattern held."""
        with self._lock:
            if self._hold is None or not _ends_in(self._hold, tail, data):
                return
            self._hold = None
            gate.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                down = self._down
            if down:
                _shut(client)
                client.close()
                continue
            server = socket.create_connection(self._target)
            gate, doomed = threading.Event(), threading.Event()
            gate.set()
            with self._lock:
                self._pairs.append((client, server))
                self._gates.append(gate)
            for args in (
                (client, server, False, gate, doomed),
                (server, client, True, gate, doomed),
            ):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        answers: bool,
        gate: threading.Event,
        doomed: threading.Event,
    ) -> None:
        # The end of the last chunk: a message split between two reads.
        tail = b""
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if self._fires(answers, tail, data):
                    break
                if answers and doomed.is_set():
                    self.cut.set()  # before the client can see the cut
                    break
                if not answers:
                    self._dooms(tail, data, doomed)
                if answers and not gate.is_set():
                    self.held.set()  # the server has answered: it ran the statement
                    gate.wait(60)
                else:
                    self._holds(tail, data, gate)
                tail = data[-_PATTERN_MAX:]
                dst.sendall(data)
        with self._lock:
            ghosts = list(self._ghosts)
        _shut(*(s for s in (src, dst) if s not in ghosts))


def _ends_in(pattern: bytes, tail: bytes, data: bytes) -> bool:
    """Whether `pattern` ends in `data` (it may begin in `tail`, the end
    of the chunk before, which went already)."""
    return (tail + data).find(pattern, max(0, len(tail) - len(pattern) + 1)) >= 0


def _shut(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def cutting_proxy(port: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()
