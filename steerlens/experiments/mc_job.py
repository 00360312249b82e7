"""TruthfulQA through the drivers (`steerlens run --task truthfulqa`): MC1/MC2 over whole answers.

`evaluate` refuses TruthfulQA's items (their answers share first tokens), so `run_mc` scores with
`multiple_choice.mc_scores` instead. Masks come from the train split's pairs (best answer vs an
incorrect one) as in `run_job` (`method_differences`, `Method.grid`); every cell of each method's
grid is scored on dev by MC1 under `steer`, the best cell (ties: the first in grid order) is scored
once on test: MC1 and MC2 with 95% bootstrap intervals and the paired difference to no steering.

Cost: every dev cell scores every answer of every dev item, one teacher-forced row each
(TruthfulQA's dev items have 9 answers on average, test items 7); about 0.14 s a row for the
embedded model on one shared CPU thread. The default grids (`MC_GRIDS`, 26 cells over six
methods) with 100 dev and 300 test items take roughly 1.5 h there; ``grid="run"`` with no
`grids` gives `run_job`'s grids (75 cells for the default methods).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._backend import HookedTransformer
from .._io import atomic_write_text
from ..mask import Mask
from ..methods import BASELINE, METHOD_NAMES, get_method
from ..models import EMBEDDED_MODEL, load_model
from ..multiple_choice import MC_METRICS, MCMetric, MCResult, mc_scores
from ..stats import N_BOOT, flags_to_str, paired_bootstrap_ci
from ..steer import steer
from ..tasks import PER_ITEM, DemoMode, PromptStyle, Task, format_task, load_task, truthfulqa_items
from ..tasks.truthfulqa import MCItem
from ._shared import method_differences
from .records import jsonable
from .report import ci_text, delta_text, pct

MC_TASKS: tuple[str, ...] = ("truthfulqa",)
PAIRED: tuple[MCMetric, ...] = ("mc1", "mc2")  # the metrics with a paired difference to none
GridOverride = tuple[tuple[int, ...] | None, tuple[float, ...]]
# Small grids (2 settings x 2 strengths; CAA: its 3 default layers x 2); other methods use the
# registry grid named by `McConfig.grid`.
MC_GRIDS: dict[str, GridOverride] = {
    "sadi-head": ((1, 4), (0.5, 1.0)),
    "sadi-neuron": ((10, 100), (1.0, 4.0)),
    "sadi-hidden": ((4, 16), (1.0, 4.0)),
    "austeer-ffn": ((10, 30), (1.0, 4.0)),
    "caa": (None, (0.5, 1.0)),
    "iti": ((2, 8), (1.0, 4.0)),
}
# SADI Table 3 (LLaMA2-7B-Chat, TruthfulQA 5-shot with prompts it did not release), MC1 and MC2 %.
_T3 = "SADI Table 3 (LLaMA2-7B-Chat, 5-shot)"
MC_PUBLISHED: Mapping[str, tuple[float, float, str]] = {
    BASELINE: (33.41, 51.07, _T3),
    "caa": (34.03, 52.76, _T3),
    "iti": (34.64, 51.55, _T3 + ", from another paper"),
    "sadi-hidden": (67.07, 92.90, _T3 + ", printed so, possibly a typo"),
    "sadi-neuron": (34.88, 52.50, _T3),
    "sadi-head": (35.90, 54.65, _T3),
}


def is_mc_name(name: str) -> bool:
    """Whether task `name` is scored by MC1/MC2 over whole answers (`run_mc`), not `evaluate`."""
    return name.strip().lower() in MC_TASKS


def is_mc_task(task: Task) -> bool:
    """Whether a loaded task carries each item's true answers (TruthfulQA), for `mc_scores`."""
    return "true_answers" in task.info.get(PER_ITEM, {})


@dataclass(frozen=True)
class McConfig:
    """What a TruthfulQA run depends on; saved in results.json.

    `grids` overrides a method's `(settings or None = its defaults, strengths)`; methods without
    one use the registry grid `grid` ("quick" falls back to "run" where a method has none).
    """

    task: str = "truthfulqa"
    model: str | None = None
    data_dir: str | None = None
    style: PromptStyle = "raw"
    n_shot: int = 0
    demos: DemoMode = "shared"
    n_train: int | None = 150
    n_dev: int | None = 100
    n_test: int | None = 300
    methods: tuple[str, ...] = tuple(MC_GRIDS)
    grid: str = "quick"
    grids: Mapping[str, GridOverride] = field(default_factory=lambda: dict(MC_GRIDS))
    batch_size: int = 32
    seed: int = 0
    n_boot: int = N_BOOT
    device: str | None = None
    out: str = "runs/truthfulqa"

    def __post_init__(self) -> None:
        for name in self.methods:
            get_method(name)  # an unknown name lists the valid ones
        if not self.methods:
            raise ValueError("McConfig needs at least one method")
        unknown = set(self.grids) - set(METHOD_NAMES)
        if unknown:
            raise ValueError(f"Grids given for unknown methods {sorted(unknown)}")
        if self.grid not in ("run", "reproduce", "quick"):
            raise ValueError(f"grid must be 'run', 'reproduce' or 'quick', got {self.grid!r}")
        for name in ("n_train", "n_dev", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None (the whole split), got {value}")
        if self.batch_size < 1 or self.n_shot < 0 or self.n_boot < 1:
            raise ValueError("batch_size and n_boot must be >= 1 and n_shot >= 0")

    def method_grid(self, name: str, n_layers: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """`(settings, strengths)` of a method in this run, for a model of `n_layers`."""
        settings, strengths = get_method(name).grid_spec(self.grid, n_layers)
        if name in self.grids:
            override, strengths = self.grids[name]
            settings = tuple(override) if override is not None else settings
        return settings, tuple(float(a) for a in strengths)


@dataclass(frozen=True)
class McRow:
    """One method (or "none"): its dev choice and whole dev grid, and its test scores."""

    method: str
    setting_name: str
    setting: Any
    strength: float
    n_units: int
    n_activations: int
    n_pairs: int
    dev: dict[str, float]  # the chosen cell's dev mc1 / mc2 / mc3
    grid: list[dict[str, Any]]
    test: MCResult
    mask: Mask | None = None  # the chosen mask ("none": None)

    def summary(self, base: MCResult | None, *, n_boot: int, seed: int) -> dict[str, Any]:
        """Test MC1/MC2/MC3 with intervals, and MC1/MC2 paired differences to `base`."""
        out: dict[str, Any] = {"n_test": self.test.n}
        for m in MC_METRICS:
            out[m] = self.test.metric(m)
            out[f"{m}_lo"], out[f"{m}_hi"] = self.test.ci(m, n_boot=n_boot, seed=seed)
        for m in PAIRED:
            d = lo = hi = math.nan
            if base is not None and self.method != BASELINE:
                d, lo, hi = paired_bootstrap_ci(
                    self.test.values(m).float().numpy(),
                    base.values(m).float().numpy(),
                    n_boot=n_boot,
                    seed=seed,
                )
            out[f"delta_{m}"], out[f"delta_{m}_lo"], out[f"delta_{m}_hi"] = d, lo, hi
        return out


@dataclass(frozen=True)
class McRunResult:
    rows: list[McRow]
    out: Path
    seconds: float
    table: str


def load_raw_mc_task(config: McConfig) -> Task:
    """The unformatted task (cheap, no model): a task without per-item true answers, or with an
    empty split, fails here, before the model loads."""
    task = load_task(config.task, data_dir=config.data_dir, seed=config.seed)
    if not is_mc_task(task):
        raise ValueError(
            f"{config.task} has no per-item true answers (only {', '.join(MC_TASKS)} has): "
            "run it with run_job"
        )
    for split in ("train", "dev", "test"):
        if not getattr(task, split):
            raise ValueError(f"{config.task}: the {split} split is empty")
    return task


def prepare_mc_task(config: McConfig, model: HookedTransformer, raw: Task) -> Task:
    """`raw` formatted for the model (style, k-shot), keeping the first rows of each split."""
    task = format_task(
        raw,
        config.style,
        tokenizer=model.tokenizer,
        n_shot=config.n_shot,
        seed=config.seed,
        demos=config.demos,
    )
    return task.with_limits(config.n_train, config.n_dev, config.n_test)


def _score(
    model: HookedTransformer,
    items: list[MCItem],
    config: McConfig,
    mask: Mask | None = None,
    strength: float = 0.0,
) -> MCResult:
    if mask is None:
        return mc_scores(model, items, batch_size=config.batch_size, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flip.* sign")
        with steer(model, mask, strength):
            return mc_scores(model, items, batch_size=config.batch_size, progress=False)


def _dev_scores(result: MCResult) -> dict[str, float]:
    return {m: result.metric(m) for m in MC_METRICS}


def run_mc(
    config: McConfig, *, model: HookedTransformer | None = None, progress: bool = True
) -> McRunResult:
    """Tune every method's grid on dev by MC1, score the chosen cell once on test, write
    results.md and results.json to `config.out`."""
    clock = time.perf_counter()
    raw = load_raw_mc_task(config)
    model = model or load_model(config.model, device=config.device)
    task = prepare_mc_task(config, model, raw)
    dev, test = truthfulqa_items(task, "dev"), truthfulqa_items(task, "test")
    methods = [get_method(name) for name in config.methods]
    diffs = method_differences(
        model, task, methods, batch_size=config.batch_size, seed=config.seed, progress=progress
    )
    dev_none = _score(model, dev, config)
    none_test = _score(model, test, config)
    rows = [McRow(BASELINE, "-", None, 0.0, 0, 0, 0, _dev_scores(dev_none), [], none_test)]
    grids: dict[str, tuple[dict[Hashable, Mask], tuple[float, ...]]] = {}
    for m in methods:
        settings, strengths = config.method_grid(m.name, model.cfg.n_layers)
        grids[m.name] = (m.grid(diffs[m.differences_key], settings), strengths)
    total = sum(len(masks) * len(strengths) for masks, strengths in grids.values())
    with tqdm(total=total, desc="truthfulqa dev", disable=not progress, unit="cell") as bar:
        for m in methods:
            masks, strengths = grids[m.name]
            cells = []
            for setting, mask in masks.items():
                for strength in strengths:
                    result = _score(model, dev, config, mask, strength)
                    cells.append((setting, strength, mask, _dev_scores(result)))
                    bar.update(1)
            best = max(range(len(cells)), key=lambda i: (cells[i][3]["mc1"], -i))  # ties: first
            setting, strength, mask, scores = cells[best]
            rows.append(
                McRow(
                    m.name,
                    m.setting_name,
                    jsonable(setting),
                    float(strength),
                    mask.k,
                    mask.n_activations,
                    diffs[m.differences_key].n_pairs,
                    scores,
                    [{"setting": jsonable(s), "strength": a, **sc} for s, a, _, sc in cells],
                    _score(model, test, config, mask, strength),
                    mask,
                )
            )
    seconds = time.perf_counter() - clock
    out = Path(config.out)
    table = write_mc_results(out, config, task, rows, seconds)
    return McRunResult(rows, out, seconds, table)


def mc_table(rows: list[McRow], *, n_boot: int = N_BOOT, seed: int = 0) -> str:
    """Markdown: one line per method, test MC1/MC2 with intervals, Δ to none, SADI Table 3."""
    base = rows[0].test if rows and rows[0].method == BASELINE else None
    lines = [
        "| method | setting (dev) | #acts | dev MC1 / MC2 | test MC1 [95% CI] | Δ MC1 vs none "
        "| test MC2 [95% CI] | Δ MC2 vs none | test MC3 | published MC1 / MC2 |",
        "|---" * 10 + "|",
    ]
    for row in rows:
        s = row.summary(base, n_boot=n_boot, seed=seed)
        setting = (
            "–"
            if row.method == BASELINE
            else f"{row.setting_name}={row.setting}, s={row.strength:g}"
        )
        paper = MC_PUBLISHED.get(row.method)
        lines.append(
            "| "
            + " | ".join(
                [
                    row.method,
                    setting,
                    str(row.n_activations),
                    f"{pct(row.dev['mc1'])} / {pct(row.dev['mc2'])}",
                    ci_text(s["mc1"], s["mc1_lo"], s["mc1_hi"]),
                    delta_text(s["delta_mc1"], s["delta_mc1_lo"], s["delta_mc1_hi"], mark=True),
                    ci_text(s["mc2"], s["mc2_lo"], s["mc2_hi"]),
                    delta_text(s["delta_mc2"], s["delta_mc2_lo"], s["delta_mc2_hi"], mark=True),
                    pct(s["mc3"]),
                    "–" if paper is None else f"{paper[0]:.2f} / {paper[1]:.2f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_mc_results(
    out: Path, config: McConfig, task: Task, rows: list[McRow], seconds: float
) -> str:
    """Write results.md, results.json (rows, dev grids, per-item test values) and the chosen masks;
    return the table."""
    table = mc_table(rows, n_boot=config.n_boot, seed=config.seed)
    header = (
        f"# {task.name}: MC1 / MC2 ({config.model or EMBEDDED_MODEL}, {task.style}, "
        f"{task.n_shot}-shot)\n\n"
        f"Sizes: {len(task.train)} train pairs, {len(task.dev)} dev, {len(task.test)} test items "
        f"(first rows of each split). Wall time {seconds:.0f} s.\n\n"
        "Each answer is scored by its log-probability given the prompt, summed over its tokens. "
        "MC1 = the best answer beats every incorrect one; MC2 = the normalised probability mass "
        "on the true answers; MC3 = the fraction of true answers above every incorrect one "
        "(no curated choice sets: best / all correct vs all incorrect answers of the CSV). "
        "Settings chosen on dev by MC1 (ties: the first cell of the grid); test scored once. "
        "Intervals: 95% percentile bootstrap over test items; Δ = paired difference to `none` "
        "on the same items (+/−/0: the interval above 0, below 0, or containing it). "
        "`published`: " + _T3 + ", for the direction of gains only.\n\n"
    )
    atomic_write_text(out / "results.md", header + table + "\n")
    base = rows[0].test
    payload = {
        "config": dataclasses.asdict(config),
        "task": repr(task),
        "seconds": seconds,
        "rows": [
            {
                "method": r.method,
                "setting_name": r.setting_name,
                "setting": r.setting,
                "strength": r.strength,
                "n_units": r.n_units,
                "n_activations": r.n_activations,
                "n_pairs": r.n_pairs,
                "dev": r.dev,
                "test": r.summary(base, n_boot=config.n_boot, seed=config.seed),
                "published": MC_PUBLISHED.get(r.method),
                "test_mc1_flags": flags_to_str(r.test.mc1),
                "test_mc2": [round(float(v), 6) for v in r.test.mc2],
                "dev_grid": r.grid,
            }
            for r in rows
        ],
    }
    text = json.dumps(payload, indent=1, default=jsonable) + "\n"
    atomic_write_text(out / "results.json", text)
    for r in rows:
        if r.mask is not None:
            r.mask.save(out / "masks" / f"{r.method}.safetensors")
    return table
