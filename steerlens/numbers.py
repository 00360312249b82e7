"""Numeric answers in generated text, as AUSteer scores its math word problems.

AUSteer's released code takes the number after `####` when the text has one (MAWPS, GSM8K) and
otherwise the last number in the text, and compares it with the gold as floats. Here commas
inside numbers (`1,000`), a leading `$`, signs and decimals are read; a text without a number
gives None, which scores wrong.
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _parse(token: str) -> float | None:
    cleaned = token.replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The number after the last `####`, else the last number in `text`, else None.

    >>> extract_number("She pays $1,250.50 in total.")
    1250.5
    >>> extract_number("so 3 + 4 = 7\\n#### 7")
    7.0
    >>> extract_number("no idea") is None
    True
    """
    if "####" in text:
        after = _NUMBER.findall(text.rsplit("####", 1)[1])
        if after:
            return _parse(after[0])
    found = _NUMBER.findall(text)
    return _parse(found[-1]) if found else None


def same_number(predicted: float | None, gold: float, *, tolerance: float = 1e-4) -> bool:
    """Whether a predicted number equals the gold (floats, relative tolerance; None is wrong).

    >>> same_number(51.0, 51), same_number(None, 51), same_number(0.333, 1 / 3)
    (True, False, False)
    """
    if predicted is None or not math.isfinite(predicted):
        return False
    return math.isclose(predicted, gold, rel_tol=tolerance, abs_tol=tolerance)
