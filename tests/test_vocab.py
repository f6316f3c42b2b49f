"""mxg.vocab mirrors the data plane's enums: the same words, the levels in
the same order, the same reasons counted as TLS-RPT and as transport
security. The Rust enums are the source (``_core.vocabulary()``)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import pytest

from mxg import _core, store
from mxg.config import base as config_base
from mxg.config import classes
from mxg.vocab import (
    FINAL_STATES,
    Level,
    Method,
    Reason,
    RecipientState,
    RiskClass,
    Status,
)


@pytest.fixture(scope="module")
def rust() -> dict[str, Any]:
    vocabulary: dict[str, Any] = json.loads(_core.vocabulary())
    return vocabulary


@pytest.mark.parametrize(
    ("key", "enum"),
    [("levels", Level), ("methods", Method), ("statuses", Status), ("reasons", Reason)],
)
def test_every_enum_has_the_data_planes_words_in_its_order(
    rust: dict[str, Any], key: str, enum: type[StrEnum]
) -> None:
    assert [m.value for m in enum] == rust[key]


def test_levels_are_ordered_by_guarantee_not_by_spelling(rust: dict[str, Any]) -> None:
    assert rust["levels"] == ["none", "opportunistic", "encrypted", "qualified"]
    assert sorted(Level, reverse=True) == [
        Level.QUALIFIED,
        Level.ENCRYPTED,
        Level.OPPORTUNISTIC,
        Level.NONE,
    ]
    assert Level.NONE < Level.OPPORTUNISTIC < Level.ENCRYPTED < Level.QUALIFIED
    # "encrypted" < "none" as strings; as levels it is the other way round.
    assert Level.ENCRYPTED > "none"
    assert Level.QUALIFIED.meets("encrypted")
    assert Level.ENCRYPTED.meets(Level.ENCRYPTED)
    assert not Level.OPPORTUNISTIC.meets("encrypted")
    assert max(Level.ENCRYPTED, Level.NONE) == "encrypted"
    with pytest.raises(ValueError, match="plaintext"):
        Level.NONE.meets("plaintext")


def test_reason_predicates_agree_with_the_data_plane(rust: dict[str, Any]) -> None:
    assert [r.value for r in Reason if r.is_tls_rpt] == rust["tls_rpt_reasons"]
    assert [r.value for r in Reason if r.is_transport_security] == rust[
        "transport_security_reasons"
    ]


def test_the_configuration_uses_the_vocabulary_itself() -> None:
    assert config_base.TransportLevel is Level
    assert config_base.Method is Method
    assert classes.RiskClass is RiskClass
    assert list(classes.LEVELS) == list(Level)
    assert list(classes.CLASSES) == list(RiskClass)


def test_recipient_states_extend_the_job_statuses() -> None:
    assert {s.value for s in Status} <= {s.value for s in RecipientState}
    assert {s.value for s in FINAL_STATES} == set(store.FINAL)
    assert [s for s in RecipientState if s.is_final] == [
        RecipientState.SENT,
        RecipientState.BOUNCED,
        RecipientState.DELETED,
    ]


def test_members_are_their_wire_words() -> None:
    assert json.dumps({"method": Method.DANE_EE}) == '{"method": "dane-ee"}'
    assert Reason("tlsa-invalid") is Reason.TLSA_INVALID
    assert Status.SENT == "sent"
