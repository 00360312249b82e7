"""How the papers compare answer strings: SADI's punctuation and special tokens removed, stripped,
lowercased (AUSteer strips and lowercases). Kept apart from `answers` so that task loaders can
use it without importing the model-side code."""

from __future__ import annotations

SADI_STRIP = (".", ";", "!", ",", "?", "\n", "</s>", "<pad>")  # removed before comparing


def normalize(text: str) -> str:
    """`text` as the papers compare it: SADI's punctuation and special tokens removed, stripped,
    lowercased.

    >>> normalize(" Yes.\\n")
    'yes'
    """
    for piece in SADI_STRIP:
        text = text.replace(piece, "")
    return text.strip().lower()


__all__ = ["SADI_STRIP", "normalize"]
