"""docker/cluster/: two mxg nodes on one PostgreSQL 15 beside a validating
Unbound (docs/cluster.md, "Trying it with docker compose"). No container
engine runs here, so the images are not built and compose is not run;
what is checked is what can be for real: the compose file parses (with
Debian's PyYAML, the test environment has no YAML parser) and names
files that exist, and each node's configuration, with the environment
compose gives it and the PostgreSQL host swapped for a real server,
passes `mxg store migrate` (the migrate service) and `mxg config check`.
Unbound's configuration (docker/unbound/unbound.conf, shared with
docker/compose.yaml) is checked by unbound-checkconf in
tests/test_packaging.py."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mxg.config import load_config
from tests.support.postgres import Postgres

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "docker" / "cluster"
NODES = ("mxg-a", "mxg-b")
# What an operator sets before `docker compose up` (compose.yaml's head).
SETTINGS = {
    "MXG_BIND": "192.0.2.25",
    "MXG_CLIENT_NETWORKS": '["192.0.2.10/32"]',
    "MXG_PG_PASSWORD": "not-used-here",
}
_DEBIAN_PYTHON = "/usr/bin/python3"


def _compose() -> dict[str, Any]:
    load = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    try:
        out = subprocess.run(
            [_DEBIAN_PYTHON, "-c", load],
            input=(HERE / "compose.yaml").read_text(),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"needs Debian's python3-yaml to parse YAML: {e}")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _interpolate(value: str) -> str:
    """Compose's ${VAR} and ${VAR:?message} with `SETTINGS`; an unset
    required variable fails as compose would refuse it."""

    def one(m: re.Match[str]) -> str:
        name = m[1]
        assert name in SETTINGS, f"{name} is not among the documented settings"
        return SETTINGS[name]

    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", one, value)


def test_the_compose_file_names_what_exists() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "unbound", *NODES}
    assert services["postgres"]["image"].startswith("postgres:15")
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = (HERE / build["context"]).resolve()
            assert context == ROOT, name
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (HERE / source).is_file(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: {source}"
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on {dep}"
    # The nodes start once the schema is there, and the resolver answers.
    for node in NODES:
        needs = services[node]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        assert needs["unbound"] == {"condition": "service_healthy"}
        assert services[node]["image"] == services["migrate"]["image"]
    assert services["migrate"]["command"] == ["store", "migrate"]
    # Every fixed address is in the network Unbound admits.
    subnet = ipaddress.ip_network(compose["networks"]["mxgnet"]["ipam"]["config"][0]["subnet"])
    unbound = (ROOT / "docker" / "unbound" / "unbound.conf").read_text()
    assert f"access-control: {subnet} allow" in unbound
    for name, service in services.items():
        net = service["networks"]
        if isinstance(net, dict) and net["mxgnet"]:
            assert ipaddress.ip_address(net["mxgnet"]["ipv4_address"]) in subnet, name
    # The settings compose refuses to start without are the documented ones.
    text = (HERE / "compose.yaml").read_text()
    assert set(re.findall(r"\$\{(\w+):\?", text)) == set(SETTINGS)


def test_the_image_builds_the_wheel_as_scripts_install_does() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert all(b.split(":")[1].startswith(("bookworm", "1-bookworm")) for b in bases), bases
    install = (ROOT / "scripts" / "install").read_text()
    assert "--require-hashes -r requirements/build.lock" in install
    assert "pip install --require-hashes -r requirements/build.lock" in dockerfile
    assert "--require-hashes -r /tmp/runtime.lock" in dockerfile


def test_each_node_configuration_migrates_and_passes_config_check(
    postgres: Postgres, tmp_path: Path
) -> None:
    compose = _compose()
    url = postgres.new_database()
    # The compose network's host name and database, swapped for this
    # server's: the only change made to the files.
    host, _, database = url.rpartition("@")[2].partition("/")
    names = set()
    for service in ("migrate", *NODES):
        spec = compose["services"][service]
        mount = next(v for v in spec["volumes"] if v.endswith(":/etc/mxg/mxg.toml:ro"))
        text = (HERE / mount.split(":", 1)[0]).read_text()
        assert 'store = "postgresql://mxg@postgres:5432/mxg"' in text
        text = text.replace("postgres:5432/mxg", f"{host}/{database}").replace("mxg@", "postgres@")
        text = text.replace('"/var/lib/mxg"', f'"{tmp_path / service}"')
        cfg = tmp_path / f"{service}.toml"
        cfg.write_text(text)
        env = {k: _interpolate(v) for k, v in spec["environment"].items()}
        env["MXG_CONFIG"] = str(cfg)
        command = spec.get("command", ["config", "check"])
        out = subprocess.run(
            [sys.executable, "-m", "mxg", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **env},
        )
        assert out.returncode == 0, out.stderr
        if service == "migrate":
            assert "schema version 0 -> " in out.stdout
            continue
        assert out.stdout.startswith(f"{cfg}: OK (listen 0.0.0.0:2525,")
        loaded = load_config(cfg, environ=env)
        assert loaded.cluster.node == service
        assert loaded.server.client_networks == ["192.0.2.10/32"]
        assert loaded.dns.nameservers == ["172.30.53.53"] and loaded.dns.trust_ad
        names.add(loaded.cluster.node)
    assert names == set(NODES)
