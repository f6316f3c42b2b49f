"""What ``mxg config check`` checks beyond the file itself: that what the
configuration names exists on this host and is usable by the relay's
user. The certificate and key load and belong together, the CA files
hold certificates, the data and log directories can be written, the run
user exists. Each problem is one line naming the key, as load errors do
(ARCHITECTURE.md rule 12); the relay would otherwise find them only at
start, or at the first delivery that needs the CA file.
"""

from __future__ import annotations

import grp
import os
import pwd
import ssl
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from mxg.errors import StoreError
from mxg.store import Store

if TYPE_CHECKING:
    from mxg.config.model import Config


def host_problems(cfg: Config, where: str) -> list[str]:
    """Every problem found, each as ``WHERE: key: reason``."""
    problems: list[str] = []
    user = _user(cfg.run.user, problems)
    for section, s in (("server", cfg.server), ("web", cfg.web), ("metrics", cfg.metrics)):
        if s.tls_cert is not None and s.tls_key is not None:
            problems += _cert_and_key(section, s.tls_cert, s.tls_key)
    if cfg.delivery.ca_file is not None:
        problems += _ca_file("delivery.ca_file", cfg.delivery.ca_file)
    if cfg.envelope.templates is not None and not cfg.envelope.templates.is_dir():
        problems.append(f"envelope.templates: {cfg.envelope.templates} is not a directory")
    if cfg.decisions.templates is not None and not cfg.decisions.templates.is_dir():
        problems.append(f"decisions.templates: {cfg.decisions.templates} is not a directory")
    if cfg.web.client_ca is not None:
        problems += _ca_file("web.client_ca", cfg.web.client_ca)
    if cfg.tlsrpt.dkim_key is not None:
        problems += _dkim_key(cfg.tlsrpt.dkim_key)
    problems += _writable_dir("data.directory", cfg.data.directory, user, may_create=True)
    if cfg.data.store:
        problems += _store_reachable(cfg.data.store)
    if cfg.log.file is not None:
        problems += _log_file(cfg.log.file, user)
    return [f"{where}: {p}" for p in problems]


def _user(name: str, problems: list[str]) -> pwd.struct_passwd | None:
    if not name:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        problems.append(f"run.user: no such user {name!r}")
        return None


def _cert_and_key(section: str, cert: Path, key: Path) -> list[str]:
    for name, path in ((f"{section}.tls_cert", cert), (f"{section}.tls_key", key)):
        if problem := _readable_file(name, path):
            return [problem]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            return [f"{section}.tls_key: {key} is not the key of the certificate in {cert}"]
        return [f"{section}.tls_cert: {cert} and {key} do not load as PEM certificate and key: {e}"]
    return []


def _ca_file(name: str, path: Path) -> list[str]:
    if problem := _readable_file(name, path):
        return [problem]
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as e:
        return [f"{name}: {path} holds no usable PEM certificate: {e}"]
    return []


def _dkim_key(path: Path) -> list[str]:
    """The TLS reports' DKIM key loads and can sign (`DkimKey.load`)."""
    from mxg.errors import MxgError  # noqa: PLC0415
    from mxg.tlsrpt.mail import DkimKey  # noqa: PLC0415  (cryptography: only when set)

    if problem := _readable_file("tlsrpt.dkim_key", path):
        return [problem]
    try:
        DkimKey.load(path, "", "")
    except MxgError as e:
        return [str(e).replace("[tlsrpt] dkim_key ", "tlsrpt.dkim_key: ", 1)]
    return []


def _readable_file(name: str, path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError as e:
        return f"{name}: {path}: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"{name}: {path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"{name}: {path} is not readable"
    return None


def _log_file(path: Path, user: pwd.struct_passwd | None) -> list[str]:
    if path.exists():
        if not path.is_file():
            return [f"log.file: {path} is not a regular file"]
        if not _writable_by(path, user):
            return [f"log.file: {path} cannot be written{_by(user)}"]
    # Rotation renames the file and the relay (as its user) creates the
    # next one: the directory must be writable too.
    return _writable_dir("log.file", path.parent, user, may_create=False)


def _writable_dir(
    name: str, path: Path, user: pwd.struct_passwd | None, *, may_create: bool
) -> list[str]:
    target = path
    if may_create:
        # mxg makes the directory (and missing parents) at start.
        while not target.exists() and target.parent != target:
            target = target.parent
    if not target.exists():
        return [f"{name}: directory {path} does not exist"]
    if not target.is_dir():
        return [f"{name}: {target} is not a directory"]
    if may_create and os.geteuid() == 0:
        # Root makes the data directory and hands it over to run.user.
        return []
    if not _writable_by(target, user):
        return [f"{name}: directory {target} cannot be written{_by(user)}"]
    return []


def _by(user: pwd.struct_passwd | None) -> str:
    return f" by run.user {user.pw_name}" if user is not None else ""


def _writable_by(path: Path, user: pwd.struct_passwd | None) -> bool:
    """Whether `user` (None: this process) may write `path`, by its mode
    bits; root may write anything."""
    if user is None or user.pw_uid == os.geteuid():
        return os.access(path, os.W_OK)
    if user.pw_uid == 0:
        return True
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem}
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _store_reachable(url: str) -> list[str]:
    """The PostgreSQL store answers, at this mxg's schema version."""
    try:
        Store(url).close()
    except StoreError as e:
        return [f"data.store: {e}"]
    return []
