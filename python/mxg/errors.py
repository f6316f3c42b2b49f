"""Exceptions raised by mxg.

::

    MxgError
    ├── ConfigError            operator configuration is invalid (file, key, reason)
    ├── UsageError             the command line asks for nothing argparse can catch
    ├── EngineError            raised by the Rust data plane (mxg._core)
    │   ├── EngineConfigError  engine refused its configuration or TLS material
    │   ├── ListenError        a listen address could not be bound
    │   ├── SpoolError         the spool could not be read or written
    │   │   └── MessageNotFound
    │   ├── JobError           a delivery job or envelope was malformed
    │   └── EngineStopped      the engine was already shut down
    ├── DataDirError           the data directory is in use by another mxg, or unsafe
    │   └── InstanceBusy       another mxg holds its instance lock
    ├── OperatorError          an operator's selection or queue action is invalid
    │   └── NotChangeable      the messages named are in no state the action applies to
    ├── WebError               a web or metrics listener cannot start (address, certificate)
    ├── EnvelopeError          a secure envelope cannot be built or opened
    │   └── WeakPassword       a sender's password is refused (the reason says why)
    └── StoreError             the queue database could not be opened safely
        └── StoreDamaged       it is not a readable SQLite database
"""

from __future__ import annotations


class MxgError(Exception):
    """Base of every mxg exception."""


class ConfigError(MxgError):
    """One or more configuration problems, each naming file, key and reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(MxgError):
    """A command line argparse accepts but that asks for nothing usable
    (``mxg check`` without a domain): exit status 2, as argparse's own."""


class EngineError(MxgError):
    """Raised by the Rust engine."""


class EngineConfigError(EngineError):
    pass


class ListenError(EngineError):
    pass


class SpoolError(EngineError):
    pass


class MessageNotFound(SpoolError):
    pass


class JobError(EngineError):
    pass


class EngineStopped(EngineError):
    pass


class DataDirError(MxgError):
    """Another relay holds the data directory, or others could change it."""


class InstanceBusy(DataDirError):
    """Another relay holds the data directory's instance lock (rule 11a):
    a temporary condition, exit status 75 (EX_TEMPFAIL)."""


class OperatorError(MxgError):
    """An operator's selection or queue action (`mxg.ops`) is invalid: a
    bad queue id, domain, age or state, or a change that is not allowed."""


class NotChangeable(OperatorError):
    """The messages an operator named by queue id exist in no state the
    action applies to (a release of a message that is not held)."""


class WebError(MxgError):
    """The web surface or the metrics endpoint cannot start: its address
    cannot be bound, or its certificate and key cannot be loaded."""


class EnvelopeError(MxgError):
    """A secure envelope (`mxg.envelope`) cannot be built or opened: a
    template is broken, the file is not an envelope, the password is wrong."""


class WeakPassword(EnvelopeError):
    """A password the sender typed is too weak for an envelope. `str()`
    is the reason in English, `german` the same in German (for the
    bilingual decision page)."""

    def __init__(self, english: str, german: str = "") -> None:
        self.german = german or english
        super().__init__(english)


class StoreError(MxgError):
    """The queue database could not be opened safely."""


class StoreDamaged(StoreError):
    """The queue database is damaged (not a database, or malformed)."""

    def __init__(self, path: object, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"the queue index {path} is damaged ({detail})")


class StoreOutdated(StoreError):
    """The PostgreSQL store's schema is older than this mxg's: the relay
    does not start until `mxg store migrate` brings it up to date."""
