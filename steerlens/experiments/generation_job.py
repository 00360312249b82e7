"""Tasks scored on generated text, steered: `steerlens math` (SVAMP, MAWPS, GSM8K as AUSteer runs
them) and `steerlens run` on a generation JSONL file (`tasks.jsonl`).

Masks from the train split's contrastive pairs (the gold answer against the most similar other
one, `tasks.negatives`), each method's setting and strength chosen on dev by accuracy
(optionally among the cells whose median perplexity under the unsteered model stays within a
bound of the unsteered text's), the chosen cell scored once on test. Every row carries the side
effects on the text; `results.md` also shows a few test generations side by side.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._backend import HookedTransformer
from .._io import atomic_write_text
from ..evaluate_generation import GenerationResult, evaluate_generation, paired_difference
from ..mask import Mask
from ..methods import METHOD_NAMES, Method, get_method
from ..models import EMBEDDED_MODEL, load_model
from ..tasks import PromptStyle, Task, format_task, load_jsonl
from ..tasks.math import MATH_TASKS, load_math_task
from ..tasks.negatives import NEGATIVE_RULES, NegativeRule
from ._shared import method_differences
from .report import delta_text

Grid = tuple[tuple[int, ...], tuple[float, ...]]
# Small grids: every cell is a generation over the dev split. AUSteer's SVAMP optimum for
# LLaMA2-7B-Chat (attention, k=50, alpha=8) is a cell of both AUSteer grids. Other methods use
# their registry's "quick" grid.
GENERATION_GRIDS: dict[str, Grid] = {
    "sadi-head": ((1, 4), (2.0, 9.0)),
    "austeer-attention": ((16, 50), (8.0, 16.0)),
    "austeer-ffn": ((16, 50), (8.0, 16.0)),
}


@dataclass(frozen=True)
class GenerationConfig:
    """What a generation run depends on (`steerlens math`; `steerlens run` on a generation file).

    `task`: a math task name (`MATH_TASKS`) or the path of a generation JSONL file. `grids`
    overrides a method's `(settings, strengths)`; `style` and `n_shot` format a file's prompts
    (the math tasks keep AUSteer's template). `negatives` picks the contrastive pairs' wrong
    answers (`tasks.negatives`).
    """

    task: str = "svamp"
    data_dir: str | None = None
    model: str | None = None
    methods: tuple[str, ...] = tuple(GENERATION_GRIDS)
    grids: Mapping[str, Grid] = field(default_factory=lambda: dict(GENERATION_GRIDS))
    style: PromptStyle = "raw"
    n_shot: int = 0
    negatives: NegativeRule = "auto"
    n_train: int | None = 200
    n_dev: int | None = 30
    n_test: int | None = 100
    max_new_tokens: int | None = None  # None: the task's (AUSteer's) length
    max_perplexity_ratio: float | None = None
    batch_size: int = 16
    seed: int = 0
    device: str | None = None
    out: str = "runs/math"

    def __post_init__(self) -> None:
        if self.task not in MATH_TASKS and not self.task.endswith(".jsonl"):
            raise ValueError(
                f"Unknown generation task {self.task!r}; give one of {list(MATH_TASKS)} "
                "or the path of a .jsonl file"
            )
        unknown = set(self.methods) - set(METHOD_NAMES)
        if unknown:
            raise ValueError(f"Unknown methods {sorted(unknown)}; valid: {list(METHOD_NAMES)}")
        if self.negatives not in NEGATIVE_RULES:
            raise ValueError(f"negatives must be one of {NEGATIVE_RULES}, got {self.negatives!r}")
        if self.max_perplexity_ratio is not None and not self.max_perplexity_ratio > 0:
            raise ValueError("max_perplexity_ratio must be positive")


@dataclass
class GenerationRow:
    """One method's dev choice and test result."""

    method: str
    setting: int | None
    strength: float | None
    dev_accuracy: float
    test: GenerationResult
    dev_grid: list[dict[str, Any]]


@dataclass
class GenerationRunResult:
    rows: list[GenerationRow]
    out: Path
    seconds: float


def load_generation_task(config: GenerationConfig, tokenizer: Any = None) -> Task:
    """The config's task with its limits: a math task, or a generation JSONL file formatted by
    `style` and `n_shot`. A multiple-choice file is refused (it belongs to `run_job`)."""
    limits = {"n_train": config.n_train, "n_dev": config.n_dev, "n_test": config.n_test}
    if config.task in MATH_TASKS:
        return load_math_task(config.task, config.data_dir, negatives=config.negatives, **limits)
    task = load_jsonl(config.task, seed=config.seed, negatives=config.negatives)
    if "generation" not in task.info:
        raise ValueError(
            f"{config.task} is a multiple-choice file (every line has 'wrong' and no 'match'): "
            "run it with `steerlens run` / run_job"
        )
    task = format_task(
        task, config.style, tokenizer=tokenizer, n_shot=config.n_shot, seed=config.seed
    )
    return task.with_limits(config.n_train, config.n_dev, config.n_test)


def method_grid(method: Method, config: GenerationConfig, n_layers: int) -> Grid:
    """A method's `(settings, strengths)` for a generation run: the config's, else its quick grid."""
    return config.grids.get(method.name) or method.grid_spec("quick", n_layers)


def _score(
    model: HookedTransformer,
    examples: Any,
    config: GenerationConfig,
    spec: dict[str, Any],
    mask: Mask | None = None,
    strength: float = 0.0,
) -> GenerationResult:
    return evaluate_generation(
        model,
        examples,
        mask=mask,
        strength=strength,
        match=spec.get("match", "number"),
        extract=spec.get("extract"),
        max_new_tokens=config.max_new_tokens or spec["max_new_tokens"],
        stop=spec["stop"],
        batch_size=config.batch_size,
        progress=False,
    )


def run_generation(
    config: GenerationConfig, *, model: HookedTransformer | None = None, progress: bool = True
) -> GenerationRunResult:
    """Tune every method on dev, score it on test once, write `results.md` and `results.json`."""
    clock = time.perf_counter()
    model = model or load_model(config.model, device=config.device)
    task = load_generation_task(config, model.tokenizer)
    if not task.dev:
        raise ValueError(f"{config.task}: the dev split is empty; nothing to tune on")
    spec = task.info["generation"]
    methods = [get_method(name) for name in config.methods]
    diffs = method_differences(model, task, methods, batch_size=config.batch_size, seed=config.seed)
    say = print if progress else (lambda *a, **k: None)
    dev_none = _score(model, task.dev, config, spec)
    rows = [
        GenerationRow(
            "none",
            None,
            None,
            dev_none.accuracy,
            _score(model, task.test, config, spec),
            [{"setting": None, "strength": 0.0, **dev_none.summary()}],
        )
    ]
    bound = (
        math.inf
        if config.max_perplexity_ratio is None
        else config.max_perplexity_ratio * dev_none.median_perplexity
    )
    for method in methods:
        settings, strengths = method_grid(method, config, model.cfg.n_layers)
        masks = method.grid(diffs[method.differences_key], settings)
        cells: list[tuple[int, float, GenerationResult, Mask]] = []
        for setting, mask in masks.items():
            for strength in strengths:
                res = _score(model, task.dev, config, spec, mask, strength)
                cells.append((int(setting), float(strength), res, mask))  # type: ignore[call-overload]
                say(f"{method.name} {setting} {strength}: dev {res.accuracy:.3f}")
        allowed = [c for c in cells if not c[2].median_perplexity > bound] or cells
        setting, strength, res, mask = max(allowed, key=lambda c: c[2].accuracy)  # ties: first
        test = _score(model, task.test, config, spec, mask, strength)
        grid = [{"setting": k, "strength": a, **r.summary()} for k, a, r, _ in cells]
        rows.append(GenerationRow(method.name, setting, strength, res.accuracy, test, grid))
    seconds = time.perf_counter() - clock
    out = Path(config.out)
    _write(out, config, task, rows, seconds)
    return GenerationRunResult(rows, out, seconds)


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


_RULES = {
    "number": "the extracted number equals the gold (AUSteer's rule)",
    "exact": "the first line equals the gold answer once both are normalised",
}


def _write(
    out: Path, config: GenerationConfig, task: Any, rows: list[GenerationRow], seconds: float
) -> None:
    base = rows[0].test
    rule = task.info["generation"]
    scoring = _RULES[rule.get("match", "number")]
    if rule.get("extract"):
        scoring += f" (read from the first match of `{rule['extract']}`)"
    lines = [
        f"# {task.name}: steered generation ({config.model or EMBEDDED_MODEL})",
        "",
        f"Sizes: {len(task.train)} train pairs, {len(task.dev)} dev, {len(task.test)} test "
        f"(first rows of each split). Greedy, at most "
        f"{config.max_new_tokens or rule['max_new_tokens']} new tokens. "
        f"Negatives: {task.info['negatives']}. Wall time {seconds:.0f} s.",
        "",
        f"Accuracy: {scoring}. Δ: paired bootstrap "
        "against no steering on the same test items. Perplexity: of the continuation under "
        "the unsteered model (median); distinct-2 and 4-gram repetition over the test texts.",
        "",
        "| method | setting (dev) | dev acc | test acc [95% CI] | Δ vs none [95% CI] | no number"
        " | at limit | perplexity | distinct-2 | rep-4 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row.test.summary()
        if row.method == "none":
            delta, setting = "–", "–"
        else:
            d, lo, hi = paired_difference(row.test, base)
            delta = delta_text(d, lo, hi, mark=True)
            setting = f"K={row.setting}, s={row.strength:g}"
        lines.append(
            f"| {row.method} | {setting} | {100 * row.dev_accuracy:.1f} | "
            f"{100 * s['accuracy']:.1f} [{100 * s['accuracy_lo']:.1f}, {100 * s['accuracy_hi']:.1f}]"
            f" | {delta} | {s['no_answer']} | {s['stopped_at_limit']} | "
            f"{_fmt(s['median_perplexity'])} | {_fmt(s['distinct_2'])} | {_fmt(s['repetition_4'])} |"
        )
    lines += ["", "## First test generations", ""]
    for i in range(min(3, len(task.test))):
        lines.append(f"**Item {i}** (gold {task.test[i].answer.strip()[-20:]!r}):")
        lines.append("")
        for row in rows:
            text = row.test.generation.texts[i].strip().replace("\n", " ⏎ ")
            lines.append(f"- {row.method}: {text[:300]!r}")
        lines.append("")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")
    payload = {
        "config": {k: v for k, v in dataclasses.asdict(config).items()},
        "seconds": seconds,
        "rows": [
            {
                "method": r.method,
                "setting": r.setting,
                "strength": r.strength,
                "dev_accuracy": r.dev_accuracy,
                "test": r.test.summary(),
                "test_texts": r.test.generation.texts,
                "dev_grid": r.dev_grid,
            }
            for r in rows
        ],
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1, default=str) + "\n")
