"""Configuration: every error at once with file, key and reason."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mxg import _core
from mxg.cli import main
from mxg.config import Config, load_config
from mxg.config.base import parse_duration
from mxg.config.example import EXAMPLE
from mxg.errors import ConfigError
from tests.support.certs import self_signed


def test_embedded_defaults() -> None:
    cfg = load_config(None, environ={})
    assert cfg.server.listen == ["127.0.0.1:10025"]
    assert cfg.spool_dir == Path("mxg-data/spool")
    assert cfg.dns.nameservers == []
    assert cfg.queue.max_lifetime == 5 * 86400
    assert cfg.run.backend == "asyncio"


def test_example_is_complete_and_equals_the_defaults() -> None:
    assert Config.model_validate(tomllib.loads(EXAMPLE)).model_dump() == Config().model_dump()


def test_every_problem_is_reported_with_file_key_and_reason(tmp_path: Path) -> None:
    f = tmp_path / "mxg.toml"
    f.write_text(
        '[server]\nlisten = ["nonsense"]\nclient_networks = ["0.0.0.0/0"]\n'
        'colour = "blue"\n[queue]\nmax_lifetime = "3 weeks"\n'
        '[delivery]\ndefault_level = "strong"\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(f, environ={})
    problems = "\n".join(e.value.problems)
    assert len(e.value.problems) == 5
    assert f"{f}: server.listen: 'nonsense' is not ip:port" in problems
    assert "server.client_networks: '0.0.0.0/0' would make mxg an open relay" in problems
    assert "server.colour: unknown key" in problems
    assert "queue.max_lifetime: '3 weeks' is not a duration" in problems
    assert "delivery.default_level:" in problems


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[server\n")
    with pytest.raises(ConfigError, match=r"broken.toml: TOML syntax"):
        load_config(f, environ={})


def test_environment_overrides_and_their_errors(tmp_path: Path) -> None:
    cfg = load_config(
        None, environ={"MXG_SERVER__LISTEN": '["127.0.0.2:25"]', "MXG_RUN__BACKEND": "trio"}
    )
    assert cfg.server.listen == ["127.0.0.2:25"]
    assert cfg.run.backend == "trio"
    with pytest.raises(ConfigError, match=r"environment MXG_DELIVERY__PORT: delivery\.port"):
        load_config(None, environ={"MXG_DELIVERY__PORT": "many"})


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    f = tmp_path / "etc" / "mxg.toml"
    f.parent.mkdir()
    f.write_text('[data]\ndirectory = "../var"\n')
    assert load_config(f, environ={}).data.directory == tmp_path / "etc" / ".." / "var"


def test_ipv6_listen_needs_brackets() -> None:
    with pytest.raises(ConfigError, match="need brackets"):
        load_config(None, environ={"MXG_SERVER__LISTEN": '["::1:25"]'})
    assert load_config(None, environ={"MXG_SERVER__LISTEN": '["[::1]:25"]'}).server.listen


def test_cluster_node_name_and_lease_are_checked(tmp_path: Path) -> None:
    assert Config().cluster.node == socket.gethostname().split(".")[0]
    f = tmp_path / "mxg.toml"
    f.write_text('[cluster]\nnode = "a b"\nheartbeat = "5s"\nlease = "10s"\n')
    with pytest.raises(ConfigError) as e:
        load_config(f, environ={})
    problems = "\n".join(e.value.problems)
    assert "cluster.node: 'a b' is not a node name" in problems
    f.write_text('[cluster]\nnode = "mxg-2.dc1"\nheartbeat = "5s"\nlease = "10s"\n')
    with pytest.raises(ConfigError, match=r"cluster: lease \(10s\) must be at least three"):
        load_config(f, environ={})
    f.write_text('[cluster]\nnode = "mxg-2.dc1"\nheartbeat = "1s"\nlease = "3s"\n')
    cfg = load_config(f, environ={}).cluster
    assert (cfg.node, cfg.heartbeat, cfg.lease, cfg.drain_timeout) == ("mxg-2.dc1", 1, 3, 300)


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("4h") == 14400
    assert parse_duration("2d") == 172800
    assert parse_duration(7) == 7
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_cli_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(EXAMPLE)
    assert main(["config", "check", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmax_recipients = 5\n")
    assert main(["config", "check", str(bad)]) == 78
    err = capsys.readouterr().err
    assert "limits.max_recipients" in err and "100" in err


def test_policy_ca_pin_is_read_at_load(tmp_path: Path) -> None:
    self_signed(tmp_path, "ca.example")
    f = tmp_path / "mxg.toml"
    f.write_text(
        '[[policy]]\ndomain = "a.example"\nmethods = ["pinned"]\nca_file = "ca.example.crt"\n'
        'cert_names = ["mx.a.example"]\n'
        '[[policy]]\ndomain = "b.example"\nca_file = "missing.pem"\n'
        '[[policy]]\ndomain = "c.example"\nca_file = "mxg.toml"\n'
        '[[policy]]\ndomain = "d.example"\ncert_names = ["x.example"]\n'
        '[[policy]]\ndomain = "e.example"\nmethods = ["pinned"]\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(f, environ={})
    problems = "\n".join(e.value.problems)
    assert len(e.value.problems) == 4, problems
    assert "policy.1: cannot read CA file" in problems and "missing.pem" in problems
    assert "policy.2:" in problems and "holds no PEM certificate" in problems
    assert "policy.3: cert_names needs ca_file" in problems
    assert "policy.4: method 'pinned' needs pins or ca_file" in problems
    f.write_text(
        '[[policy]]\ndomain = "a.example"\nmethods = ["pinned"]\nca_file = "ca.example.crt"\n'
    )
    [policy] = load_config(f, environ={}).policy
    der = bytes.fromhex(policy.ca_certificates[0])
    assert der[0] == 0x30 and len(der) > 100  # a DER SEQUENCE: the certificate


def test_the_verdict_screen_lets_plain_messages_pass_only_when_no_rule_can_refuse() -> None:
    # Defaults: only secret refuses, and only the marker header leads there.
    cfg = load_config(None, environ={})
    assert cfg.engine_json()["verdict_screen"] == {"header": "X-MXG-Risk", "classes": ["secret"]}
    # A rule that yields secret may fire on any message: ask about all.
    rule = {"name": "tag", "class": "secret", "subject_tag": "[secret]"}
    assert Config.model_validate({"rule": [rule]}).engine_json()["verdict_screen"] is None
    # A rule into a class that does not refuse changes nothing.
    rule = {"name": "tag", "class": "high", "subject_tag": "[high]"}
    screen = Config.model_validate({"rule": [rule]}).engine_json()["verdict_screen"]
    assert screen == {"header": "X-MXG-Risk", "classes": ["secret"]}
    # Nothing refuses: no verdicts at all.
    cfg = Config.model_validate({"classes": {"secret": {"on_unmet": "bounce"}}})
    assert cfg.engine_json()["verdict_deadline_ms"] == 0


def test_inflow_control_reaches_the_engine_and_zero_turns_it_off(tmp_path: Path) -> None:
    engine = load_config(None, environ={}).engine_json()
    assert (engine["in_flow_delay_ms"], engine["in_flow_limit"]) == (1000, 100)
    off = load_config(None, environ={"MXG_SERVER__IN_FLOW_DELAY": '"0s"'})
    assert off.engine_json()["in_flow_delay_ms"] == 0
    f = tmp_path / "mxg.toml"
    f.write_text("[server]\nin_flow_limit = 0\n")
    with pytest.raises(ConfigError, match=r"server\.in_flow_limit"):
        load_config(f, environ={})


def test_subsecond_durations_reach_the_engine_in_milliseconds(tmp_path: Path) -> None:
    """Every duration crosses the boundary in milliseconds: a 0.5 s timeout
    is 500 ms in the engine, not 0 (which turned timeouts and connection
    reuse off). The engine refuses unknown keys, so building one checks
    that both sides use the same names."""
    cfg = Config.model_validate(
        {
            "server": {"listen": ["127.0.0.1:0"], "shutdown_grace": "0.5s"},
            "data": {"directory": str(tmp_path)},
            "limits": {"command_timeout": "0.5s", "data_timeout": "1.5s"},
            "delivery": dict.fromkeys(
                (
                    "connect_timeout",
                    "greeting_timeout",
                    "command_timeout",
                    "data_init_timeout",
                    "data_block_timeout",
                    "data_done_timeout",
                    "idle_timeout",
                ),
                "0.5s",
            ),
        }
    )
    engine_cfg = cfg.engine_json()
    durations = {k: v for k, v in engine_cfg["outbound"].items() if k.endswith("_ms")}
    assert set(durations.values()) == {500}
    assert len(durations) == 7
    assert engine_cfg["limits"]["command_timeout_ms"] == 500
    assert engine_cfg["limits"]["data_timeout_ms"] == 1500
    assert engine_cfg["shutdown_grace_ms"] == 500
    assert not any(k.endswith("_s") for k in _keys(engine_cfg))
    _core.Engine(json.dumps(engine_cfg)).shutdown()


def _keys(d: dict[str, Any]) -> list[str]:
    return [k for k, v in d.items() for k in [k, *(_keys(v) if isinstance(v, dict) else [])]]


def test_the_container_configuration_trusts_no_network_by_default() -> None:
    """Issue 14 item 8: behind Docker's userland proxy every outside client
    arrives from a Docker-internal address, so no such range is trusted
    unless the deployment names its internal servers."""
    root = Path(__file__).resolve().parent.parent / "docker"
    cfg = load_config(root / "mxg.toml", environ={})
    assert cfg.server.client_networks == ["127.0.0.1/32"]
    compose = (root / "compose.yaml").read_text()
    assert "${MXG_BIND:?" in compose and '"25:25"' not in compose
    assert "${MXG_CLIENT_NETWORKS:?" in compose
    with_networks = load_config(
        root / "mxg.toml", environ={"MXG_SERVER__CLIENT_NETWORKS": '["192.0.2.10/32"]'}
    )
    assert with_networks.server.client_networks == ["192.0.2.10/32"]


def test_max_receiving_reaches_the_engine_and_zero_turns_it_off() -> None:
    assert load_config(None, environ={}).engine_json()["max_receiving"] == 64
    off = load_config(None, environ={"MXG_SERVER__MAX_RECEIVING": "0"})
    assert off.engine_json()["max_receiving"] == 0


def test_web_and_metrics_are_off_by_default_and_checked_like_server_listen(
    tmp_path: Path,
) -> None:
    cfg = load_config(None, environ={})
    assert cfg.web.listen == [] and cfg.metrics.listen == []
    f = tmp_path / "mxg.toml"
    f.write_text(
        '[web]\nlisten = ["localhost:8443"]\nroot_path = "mxg/"\n'
        '[metrics]\nlisten = ["[::1]:9187"]\ntls_cert = "cert.pem"\n'
    )
    with pytest.raises(ConfigError) as e:
        load_config(f, environ={})
    assert sorted(e.value.problems) == [
        f"{f}: metrics: tls_cert and tls_key go together",
        f"{f}: web.listen: 'localhost:8443': 'localhost' is not an IP address",
        f"{f}: web.root_path: 'mxg/' is not a path prefix such as /mxg",
    ]
    f.write_text(
        '[web]\nlisten = ["0.0.0.0:8443", "[::]:8443"]\ntls_cert = "tls/cert.pem"\n'
        'tls_key = "tls/key.pem"\nproxy_hops = 1\nroot_path = "/mxg"\n'
    )
    web = load_config(f, environ={}).web
    assert web.tls_cert == tmp_path / "tls" / "cert.pem"  # relative to the file
    assert (web.proxy_hops, web.root_path) == (1, "/mxg")
