"""Building blocks of the configuration models, shared by the sections
(`mxg.config.sections`) and the classes (`mxg.config.classes`): the
strict section base, durations, levels."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mxg.vocab import Level
from mxg.vocab import Method as VocabMethod

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: object) -> object:
    """``"5m"`` → 300.0; numbers pass through; anything else is left for
    pydantic to reject with its own message."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (e.g. 30, 90s, 5m, 4h, 5d)")
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]

# The vocabulary's enums (defined once, mirrored from the engine's).
TransportLevel = Level
Method = VocabMethod
PIN = re.compile(r"^(spki|cert)-sha256:[0-9a-f]{64}$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
