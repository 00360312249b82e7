"""Names for the string choices the API takes, as `Literal` types (checked by mypy)."""

from __future__ import annotations

from typing import Literal

Metric = Literal["accuracy", "restricted", "paper"]
Positions = Literal["last", "all", "from"]
Operation = Literal["scale", "add"]
UnitKind = Literal["head", "dim"]
