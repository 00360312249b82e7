"""steerlens: find the units of a language model that matter for a task, and steer with them.

Implements SADI (Wang et al., ICLR 2025) and AUSteer (Feng et al., ICLR 2026) on TransformerLens
`HookedTransformer`s: load, collect, select, steer, evaluate; `tune` chooses a setting on dev and
scores test once; `METHODS` is the registry of every method the drivers run.

>>> import steerlens
>>> model = steerlens.load_model()  # doctest: +SKIP
>>> task = steerlens.load_task("sentiment")
>>> diffs = steerlens.collect_differences(model, task.train, site="head")  # doctest: +SKIP
>>> mask = steerlens.sadi_mask(diffs, k=4)  # doctest: +SKIP
>>> with steerlens.steer(model, mask, strength=0.5):  # doctest: +SKIP
...     print(steerlens.evaluate(model, task.test))
"""

__version__ = "0.1.0"  # first, so modules imported below can read it

from .baselines import caa_mask, fixed_vector_mask, iti_mask, random_mask
from .collect import Differences, collect_activations, collect_differences
from .evaluate import EncodedItems, EvalResult, encode_items, evaluate
from .evaluate_generation import GenerationResult, evaluate_generation
from .generate import Generation, generate
from .inspector import Inspector, UnitInfo, inspect
from .iti import iti_released_mask
from .mask import Mask
from .methods import METHODS, Method
from .models import add_pre_norm_hooks, load_model
from .multiple_choice import MCResult, answer_logprobs, mc_scores
from .select import austeer_mask, sadi_mask
from .sites import check_site
from .steer import prompt_end, steer, steering_hooks
from .sweep import SweepResult, sweep
from .tasks import (
    Example,
    MCItem,
    Task,
    discipline_accuracy,
    format_task,
    load_task,
    per_item,
    truthfulqa_items,
)
from .tasks.math import load_math_task
from .tune import Grid, TuneResult, tune

__all__ = [
    "METHODS",
    "Differences",
    "EncodedItems",
    "EvalResult",
    "Example",
    "Generation",
    "GenerationResult",
    "Grid",
    "Inspector",
    "MCItem",
    "MCResult",
    "Mask",
    "Method",
    "SweepResult",
    "UnitInfo",
    "Task",
    "TuneResult",
    "add_pre_norm_hooks",
    "answer_logprobs",
    "austeer_mask",
    "caa_mask",
    "check_site",
    "collect_activations",
    "collect_differences",
    "discipline_accuracy",
    "encode_items",
    "evaluate",
    "evaluate_generation",
    "fixed_vector_mask",
    "format_task",
    "generate",
    "inspect",
    "iti_mask",
    "iti_released_mask",
    "load_math_task",
    "load_model",
    "load_task",
    "mc_scores",
    "per_item",
    "prompt_end",
    "random_mask",
    "sadi_mask",
    "steer",
    "steering_hooks",
    "sweep",
    "truthfulqa_items",
    "tune",
]
