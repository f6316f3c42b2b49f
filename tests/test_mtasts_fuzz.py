"""MTA-STS policy parsing (RFC 8461 §3.2) on any text: a fetched body is
whatever the policy host sends, so `parse_policy` either returns a valid
Policy or raises PolicyError, never anything else (docs/fuzzing.md)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mxg.dns import MAX_MAX_AGE, Policy, PolicyError, parse_policy
from mxg.vocab import Reason

# Bodies built from the policy's own fields (each present, missing or
# repeated, in any order, spaced and ended in every way a body may be),
# with arbitrary lines mixed in, so that valid policies come up as often
# as broken ones. Hypothesis favours small integers, so the rare choices
# are the largest.
_MAX_AGE = st.one_of(
    st.integers(-10, MAX_MAX_AGE + 10).map(str),
    st.sampled_from(["604800", "+5", " 7 ", "1_000", "\u0665", "9" * 5000, "1e3", "0x10", ""]),
)
_MX = st.sampled_from(["mail.example.com", "*.example.net", ".", "*.", "a b", ""]) | st.text(
    max_size=12
)
_BLANK = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def _policy_text(draw: st.DrawFn) -> str:
    def mostly(good: st.SearchStrategy[str], bad: list[str]) -> str:
        return draw(st.sampled_from(bad) if draw(st.integers(0, 9)) == 9 else good)

    fields = [
        ("version", mostly(st.just("STSv1"), ["STSv2", "stsv1", ""])),
        ("mode", mostly(st.sampled_from(["enforce", "testing", "none"]), ["ENFORCE", ""])),
        ("max_age", draw(_MAX_AGE)),
        *(("mx", mx) for mx in draw(st.lists(_MX, max_size=3))),
    ]
    # Drop or repeat a field now and then.
    fields = [f for f in fields if draw(st.integers(0, 9)) < 9]
    if fields and draw(st.integers(0, 4)) == 4:
        fields.append(draw(st.sampled_from(fields)))
    lines = [
        f"{draw(_BLANK)}{key}{draw(_BLANK)}:{draw(_BLANK)}{value}{draw(_BLANK)}"
        for key, value in fields
    ]
    if draw(st.integers(0, 3)) == 3:
        lines.append(draw(st.text(max_size=30)))
    lines = draw(st.permutations(lines))
    ends = draw(st.sampled_from([["\r\n"], ["\n"], ["\r\n", "\n"], ["\n", "\r"], ["\r\n", ""]]))
    return "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))


def _check(text: str) -> None:
    """Any exception but PolicyError fails the test as it propagates."""
    try:
        policy: Policy | PolicyError = parse_policy("example.com", "20240101", text)
    except PolicyError as e:
        policy = e
    if isinstance(policy, PolicyError):
        assert policy.reason == Reason.STS_POLICY_INVALID
        assert str(policy).startswith(f"{Reason.STS_POLICY_INVALID}: ")
        return
    assert isinstance(policy, Policy)
    assert (policy.domain, policy.id) == ("example.com", "20240101")
    assert policy.mode in ("enforce", "testing", "none")
    assert isinstance(policy.max_age, int)
    assert 0 <= policy.max_age <= MAX_MAX_AGE
    assert policy.mode == "none" or policy.mx, "a blocking mode without mx patterns"
    for pattern in policy.mx:
        assert isinstance(pattern, str)
        assert pattern == pattern.strip()
        assert "\n" not in pattern
        # Matching never fails on what parsing let through.
        policy.matches("mail.example.com")


@settings(max_examples=300)
@given(_policy_text())
@example("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n")
@example("version: STSv1\nmode: none\nmax_age: 0\n")
@example("version: STSv1\nmode: testing\nmx: a\nmax_age: " + "9" * 5000)
@example("version: STSv1\nversion: STSv1\nmode: enforce\nmx: a\nmax_age: 1")
def test_a_policy_like_body_parses_or_raises_policy_error(text: str) -> None:
    _check(text)


@settings(max_examples=300)
@given(st.text())
@example("")
@example(":")
@example("\x00\r\n\u2028\ud7ff")
def test_any_text_parses_or_raises_policy_error(text: str) -> None:
    _check(text)
