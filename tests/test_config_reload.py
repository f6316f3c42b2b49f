"""What a reload (SIGHUP) applies and what it leaves for a restart
(`mxg.config.reload`)."""

from __future__ import annotations

from pathlib import Path

from mxg.config import load_config
from mxg.config.reload import DELIVERY_PER_JOB, STARTED, keep_started, restart_keys


def test_restart_only_keys_are_named_and_keep_their_started_values() -> None:
    running = load_config(None, environ={})
    new = load_config(
        None,
        environ={
            "MXG_SERVER__LISTEN": '["127.0.0.1:2525"]',
            "MXG_DATA__DIRECTORY": '"/elsewhere"',
            "MXG_DNS__TRUST_AD": "true",
            "MXG_DELIVERY__CONNECT_TIMEOUT": '"9s"',
            "MXG_LIMITS__MAX_RECIPIENTS": "500",
            "MXG_SERVER__CLIENT_NETWORKS": '["10.0.0.0/8"]',
            "MXG_DELIVERY__MAX_JOBS": "10",
            "MXG_LOG__LEVEL": "debug",
        },
    )
    assert restart_keys(running, new) == [
        "server.listen",
        "data.directory",
        "dns.trust_ad",
        "delivery.connect_timeout",
    ]
    applied = keep_started(new, running)
    assert applied.server.listen == running.server.listen
    assert applied.data == running.data and applied.dns == running.dns
    assert applied.delivery.connect_timeout == running.delivery.connect_timeout
    # What a reload changes.
    assert applied.limits.max_recipients == 500
    assert applied.server.client_networks == ["10.0.0.0/8"]
    assert applied.delivery.max_jobs == 10
    assert applied.log.level == "debug"
    assert applied.engine_json()["limits"]["max_recipients"] == 500
    assert restart_keys(running, applied) == []


def test_policies_rules_and_classes_are_applied(tmp_path: Path) -> None:
    running = load_config(None, environ={})
    f = tmp_path / "mxg.toml"
    f.write_text(
        '[classes.normal]\nlevel = "qualified"\n'
        '[[policy]]\ndomain = "partner.example"\nmin_level = "encrypted"\n'
        '[[rule]]\nname = "hr"\nclass = "high"\nsender = ["*@hr.example"]\n'
    )
    applied = keep_started(load_config(f, environ={}), running)
    assert restart_keys(running, applied) == []
    assert applied.class_policy("normal").level == "qualified"
    assert applied.policy_for("partner.example") is not None
    assert [r.name for r in applied.rule] == ["hr"]


def test_every_started_key_exists() -> None:
    cfg = load_config(None, environ={})
    for section, keys in STARTED.items():
        fields = type(getattr(cfg, section)).model_fields
        assert set(keys or ()) <= set(fields), section
    assert set(DELIVERY_PER_JOB) <= set(type(cfg.delivery).model_fields)


def test_web_and_metrics_listeners_need_a_restart() -> None:
    # Their sockets and certificates are taken before the privilege drop.
    running = load_config(None, environ={})
    for section in ("web", "metrics"):
        env = {f"MXG_{section.upper()}__LISTEN": '["127.0.0.1:8443"]'}
        applied = keep_started(load_config(None, environ=env), running)
        assert getattr(applied, section).listen == []
        assert restart_keys(running, load_config(None, environ=env)) == [f"{section}.listen"]
