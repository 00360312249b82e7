"""The accuracies the papers publish for each method and task (LLaMA2-7B-Chat), with sources.

The registry (`methods.py`) attaches these tables to its methods; reports print them beside
steerlens' numbers to compare the direction of gains, not the level.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

Published = Mapping[str, tuple[float, str]]  # task -> (accuracy %, source)

SADI_T1 = "SADI Table 1 (LLaMA2-7B-Chat)"
SADI_T4 = "SADI Table 4 (LLaMA2-7B-Chat)"
AU_LOG = "AUSteer authors' run log (LLaMA2-7B-Chat)"


def published_table(source: str, **values: float) -> Published:
    """A read-only `{task: (accuracy %, source)}` table of one source."""
    return MappingProxyType({task: (value, source) for task, value in values.items()})


# SADI Table 1's NLI column is XNLI-en; its MMLU column pools the subjects (SADI ran MMLU on the
# same rows it built masks from: `load_task("mmlu+released")`; `paper()` finds it under "mmlu").
SADI_T1_HEAD = published_table(
    SADI_T1,
    copa=78.80,
    storycloze=79.75,
    sst2=92.20,
    boolq=74.35,
    winogrande=53.04,
    mmlu=48.23,
    **{"xnli-en": 64.21},
)
SADI_T1_NEURON = published_table(
    SADI_T1,
    copa=82.20,
    storycloze=67.57,
    sst2=88.69,
    boolq=70.40,
    winogrande=51.93,
    mmlu=46.91,
    **{"xnli-en": 62.97},
)
SADI_T1_HIDDEN = published_table(
    SADI_T1,
    copa=81.00,
    storycloze=55.99,
    sst2=92.15,
    boolq=76.25,
    winogrande=52.64,
    mmlu=45.66,
    **{"xnli-en": 59.28},
)
ITI_T1 = published_table(
    SADI_T1,
    copa=77.20,
    storycloze=68.50,
    sst2=91.38,
    boolq=74.10,
    winogrande=52.80,
    mmlu=46.07,
    **{"xnli-en": 63.97},
)
# COPA 82.8 and WinoGrande 53.28 also in AUSteer Table 13.
AUSTEER_FFN_PUBLISHED: Published = MappingProxyType(
    {
        "copa": (82.80, AU_LOG + ", ffn, k=16, alpha=50"),
        "winogrande": (53.28, AU_LOG + ", ffn, k=2, alpha=100"),
    }
)

UNSTEERED_PUBLISHED: Published = published_table(
    SADI_T1,
    copa=70.80,
    storycloze=65.06,
    sst2=88.63,
    boolq=70.52,
    winogrande=50.91,
    mmlu=44.90,
    **{"xnli-en": 63.11},
)


def published_key(task: str) -> str:
    """The name a task's published numbers are stored under: SADI ran MMLU on its released rows."""
    return "mmlu" if task == "mmlu+released" else task


__all__ = [
    "AUSTEER_FFN_PUBLISHED",
    "AU_LOG",
    "ITI_T1",
    "SADI_T1",
    "SADI_T1_HEAD",
    "SADI_T1_HIDDEN",
    "SADI_T1_NEURON",
    "SADI_T4",
    "UNSTEERED_PUBLISHED",
    "Published",
    "published_key",
    "published_table",
]
