"""Classification rules and class requirements (issue 4), on features as the
data plane's scanner reports them."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from mxg.boundary import Envelope, draft_envelope
from mxg.classify import classify, requirement
from mxg.config import Config


def config(toml: str = "") -> Config:
    return Config.model_validate(tomllib.loads(toml))


def env(sender: str = "alice@example.org", *rcpts: str, requiretls: bool = False) -> Envelope:
    return draft_envelope(sender, list(rcpts or ("bob@partner.test",)), requiretls=requiretls)


def features(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "subject": "",
        "headers": {},
        "detectors": {},
        "attachments": [],
        "encryption": None,
    }
    return base | kw


RULES = """
[groups]
finance = ["*@kasse.example.org", "chef@example.org"]

[[rule]]
name = "finance"
class = "high"
sender = ["group:finance"]

[[rule]]
name = "clinic partners"
class = "high"
recipient = ["*.klinik.test", "klinik.test"]

[[rule]]
name = "sensitivity"
class = "high"
header = { name = "Sensitivity", values = ["Private", "Company-Confidential"] }

[[rule]]
name = "tag"
class = "secret"
subject_tag = "[vertraulich]"
strip_tag = true

[[rule]]
name = "two ibans"
class = "high"
detector = "iban"
min_count = 2

[[rule]]
name = "health words"
class = "high"
keywords = ["Diagnose", "Befund"]
min_count = 2

[[rule]]
name = "spreadsheets"
class = "high"
attachment = ["*.xlsx"]
"""


def test_default_class_is_normal_and_needs_encrypted_tls() -> None:
    cfg = config()
    c = classify(cfg, env(), features())
    assert c.message_class == "normal"
    assert c.recipient_classes == ["normal"]
    req = requirement(cfg, "normal", c.to_json(), None)
    assert (req.level, req.e2e_missing) == ("encrypted", False)


def test_marker_header_raises_the_class_and_is_stripped_before_delivery() -> None:
    c = classify(config(), env(), features(headers={"x-mxg-risk": ["High"]}))
    assert c.message_class == "high"
    assert c.strip_headers == ["X-MXG-Risk"]
    assert any(f["why"] == "X-MXG-Risk: high" for f in c.fired)


def test_marker_can_be_kept_and_a_bad_value_is_noted_not_obeyed() -> None:
    c = classify(
        config("[classify]\nstrip_marker = false\n"),
        env(),
        features(headers={"x-mxg-risk": ["top secret"]}),
    )
    assert c.message_class == "normal"
    assert c.strip_headers == []
    assert "ignored X-MXG-Risk value 'top secret'" in c.notes


def test_highest_class_wins_and_every_rule_that_fired_is_explained() -> None:
    cfg = config(RULES)
    c = classify(
        cfg,
        env("chef@example.org"),
        features(subject="[Vertraulich] Befund", headers={"sensitivity": ["private"]}),
    )
    assert c.message_class == "secret"
    fired = {f["rule"]: f["class"] for f in c.fired}
    assert fired == {
        "default": "normal",
        "rule 'finance'": "high",
        "rule 'sensitivity'": "high",
        "rule 'tag'": "secret",
    }
    assert c.subject_tag == "[vertraulich]"


def test_recipient_rules_raise_only_their_recipients() -> None:
    c = classify(config(RULES), env("a@example.org", "x@other.test", "y@a.klinik.test"), features())
    assert c.recipient_classes == ["normal", "high"]
    assert c.message_class == "high"
    assert c.fired[-1]["recipients"] == ["y@a.klinik.test"]


@pytest.mark.parametrize(
    ("detectors", "expected"),
    [
        ({"iban": 1}, "normal"),
        ({"iban": 2}, "high"),
        ({"keyword:health words": 1}, "normal"),
        ({"keyword:health words": 2}, "high"),
    ],
)
def test_detector_thresholds(detectors: dict[str, int], expected: str) -> None:
    assert classify(config(RULES), env(), features(detectors=detectors)).message_class == expected


def test_attachment_rule() -> None:
    att = [{"name": "gehaelter.xlsx", "content_type": "application/vnd.ms-excel", "size": 9}]
    assert classify(config(RULES), env(), features(attachments=att)).message_class == "high"


def test_secret_needs_end_to_end_encryption_unless_the_content_has_it() -> None:
    cfg = config()
    plain = classify(cfg, env(), features(headers={"x-mxg-risk": ["secret"]}))
    assert requirement(cfg, "secret", plain.to_json(), None).e2e_missing
    enc = classify(cfg, env(), features(headers={"x-mxg-risk": ["secret"]}, encryption="smime"))
    req = requirement(cfg, "secret", enc.to_json(), None)
    assert (req.level, req.e2e_missing) == ("qualified", False)


def test_e2e_content_may_relax_the_transport_level_per_class() -> None:
    cfg = config('[classes.high]\ne2e_level = "encrypted"\n')
    enc = classify(cfg, env(), features(encryption="pgp"))
    assert requirement(cfg, "high", enc.to_json(), None).level == "encrypted"
    plain = classify(cfg, env(), features())
    assert requirement(cfg, "high", plain.to_json(), None).level == "qualified"


def test_requiretls_raises_to_qualified() -> None:
    cfg = config()
    c = classify(cfg, env(requiretls=True), features())
    assert requirement(cfg, "normal", c.to_json(), None).level == "qualified"


def test_tls_required_no_only_for_normal_and_only_when_allowed() -> None:
    no = features(headers={"tls-required": ["No"]})
    cfg = config()
    assert not classify(cfg, env(), no).tls_optional
    allowed = config("[classify]\nhonour_tls_required_no = true\n")
    c = classify(allowed, env(), no)
    assert c.tls_optional
    assert requirement(allowed, "normal", c.to_json(), None).level == "opportunistic"
    high = classify(
        allowed, env(), no | {"headers": {"tls-required": ["no"], "x-mxg-risk": ["high"]}}
    )
    assert not high.tls_optional
    assert "only class normal may relax" in high.notes[0]


def test_an_operator_release_level_overrides_everything() -> None:
    cfg = config()
    c = classify(cfg, env(), features(headers={"x-mxg-risk": ["secret"]}))
    req = requirement(cfg, "secret", c.to_json(), None, override="encrypted")
    assert (req.level, req.e2e_missing) == ("encrypted", False)


def test_the_deprecated_default_level_still_sets_class_normal() -> None:
    cfg = config('[delivery]\ndefault_level = "opportunistic"\n')
    assert cfg.class_policy("normal").level == "opportunistic"
    both = config('[delivery]\ndefault_level = "none"\n[classes.normal]\nlevel = "qualified"\n')
    assert both.class_policy("normal").level == "qualified"


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[[rule]]\nname = "x"\nclass = "high"\n', "has no condition"),
        ('[[rule]]\nname = "x"\nclass = "urgent"\nsender = ["a@b"]\n', "class"),
        ('[[rule]]\nname = "x"\nclass = "high"\ndetector = "ssn"\n', "detector"),
        ('[[rule]]\nname = "x"\nclass = "high"\nsender = ["group:nope"]\n', "no group 'nope'"),
        ('[classes.high]\non_unmet = "reroute"\n', "needs reroute"),
        ('[classes.high]\non_unmet = "reroute"\nreroute = "a:b:c"\n', "is not host"),
        (
            '[[rule]]\nname = "x"\nclass = "high"\nsender = ["a@b"]\n'
            '[[rule]]\nname = "x"\nclass = "high"\nsender = ["a@b"]\n',
            "used twice",
        ),
    ],
)
def test_bad_rules_and_classes_are_refused_with_the_reason(toml: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        config(toml)
