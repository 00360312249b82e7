"""Names for the string choices the API takes, as `Literal` types (checked by mypy)."""

from __future__ import annotations

from typing import Literal

Metric = Literal["accuracy", "restricted", "paper"]
Positions = Literal["last", "all", "from", "each_last"]
Operation = Literal["scale", "add", "clamp"]
UnitKind = Literal["head", "dim"]
PairFormat = Literal["template", "sadi", "austeer"]
SadiMode = Literal["formula", "released"]
