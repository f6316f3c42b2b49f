"""What is shipped beside the wheel: the systemd unit (sandboxed, reload
by SIGHUP, rated by systemd-analyze), and the container files (a
non-root image with a HEALTHCHECK, a validating Unbound whose
configuration Unbound itself accepts). No container engine runs here, so
the images are not built (docs/operations.md, "Running in a container")."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "systemd" / "mxg.service"
# systemd-analyze's exposure scale: 0 safest, 10 not sandboxed at all; a
# network daemon cannot go much below 1.5 (it needs the network and AF_UNIX).
MAX_EXPOSURE = 2.0


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_is_sandboxed_and_reloads_by_sighup() -> None:
    d = _directives(UNIT)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/mxg",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "User": "mxg",
        "StateDirectory": "mxg",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus": "78",
        "UMask": "0077",
    }.items():
        assert d.get(key) == [value], key
    assert d["ExecStartPre"] == ["/opt/mxg/bin/mxg config check"]
    assert d["Environment"] == ["MXG_CONFIG=/etc/mxg/mxg.toml"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_rates_the_unit_ok() -> None:
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for mxg\.service: (\d+\.\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m[1]) <= MAX_EXPOSURE, out.stdout


def test_the_image_runs_as_mxg_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "\nUSER mxg\n" in final
    assert "\nHEALTHCHECK " in final and "healthcheck.py" in final
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "target/" in ignore and ".venv/" in ignore


def test_the_health_check_sees_a_greeting() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def greet() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"220 mxg.test ESMTP mxg\r\n")
                conn.recv(100)

        t = threading.Thread(target=greet)
        t.start()
        check = [sys.executable, str(ROOT / "docker" / "healthcheck.py"), "127.0.0.1", str(port)]
        assert subprocess.run(check, timeout=30, check=False).returncode == 0
        t.join(10)
    # Nothing listens there any more.
    assert subprocess.run(check, capture_output=True, timeout=30, check=False).returncode == 1


@pytest.mark.skipif(shutil.which("unbound-checkconf") is None, reason="needs unbound")
def test_the_unbound_sidecar_validates_and_unbound_accepts_its_configuration(
    tmp_path: Path,
) -> None:
    conf = (ROOT / "docker" / "unbound" / "unbound.conf").read_text()
    assert 'auto-trust-anchor-file: "/var/lib/unbound/root.key"' in conf
    # The image copies Debian's root key there; here a copy stands in.
    anchor = tmp_path / "root.key"
    anchor.write_text(
        ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"
    )
    local = tmp_path / "unbound.conf"
    local.write_text(conf.replace("/var/lib/unbound/root.key", str(anchor)))
    out = subprocess.run(
        ["unbound-checkconf", str(local)], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert 'MXG_DNS__TRUST_AD: "true"' in compose
    assert "ipv4_address: 172.30.53.53" in compose
