"""Multilingual transfer (`steerlens transfer`): a mask built and tuned on one task, applied to others.

For each source task, `run_transfer` collects the method's differences on the source's train
split, builds its grid of masks (`Method.grid_spec(grid, n_layers)`, `Method.grid`) and chooses K
and strength on the SOURCE's dev split with `steerlens.tune.choose_on_dev` (the rule `run_job`
uses). That fixed mask and strength are then scored once on every target's test split
(`score_on_test`), beside the unsteered model on the same items. The table is source x target:
test accuracy with 95% bootstrap intervals and the paired difference to the unsteered target,
under each protocol. The diagonal is the in-task result; off it, whether the units a task picks
in one language (XNLI en/fr/es/zh; COPA -> XCOPA-fr) carry over to another.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._backend import HookedTransformer
from .._io import atomic_write_text, csv_text
from .._types import Metric
from ..evaluate import METRICS, EvalResult, encode_items
from ..methods import get_method
from ..models import EMBEDDED_MODEL, load_model
from ..stats import N_BOOT, paired_bootstrap_ci, verdict
from ..tasks import DemoMode, PromptStyle, Task, load_task
from ..tune import Choice, Grid, choose_on_dev, score_on_test
from ._shared import method_differences
from .mc_job import is_mc_name, is_mc_task
from .records import jsonable
from .report import SHORT, ci_text, delta_text, pct

TaskLoader = Callable[[str, HookedTransformer], Task]
XNLI_TRANSFER: tuple[str, ...] = ("xnli-en", "xnli-fr", "xnli-es", "xnli-zh")
CSV_COLUMNS = (
    *("model", "method", "source", "target", "setting_name", "setting", "strength"),
    *("n_activations", "n_pairs", "dev_source", "n_test", "protocol"),
    *("test", "test_lo", "test_hi", "unsteered", "delta", "delta_lo", "delta_hi", "verdict"),
)


@dataclass(frozen=True)
class TransferConfig:
    """What a transfer run depends on; saved as config.json.

    `tasks` are the sources; `targets` (None: the same tasks) are scored with each source's mask.
    Defaults are sized for a 2-core CPU on the embedded model.
    """

    tasks: tuple[str, ...] = XNLI_TRANSFER
    targets: tuple[str, ...] | None = None
    method: str = "sadi-head"
    model: str | None = None
    data_dir: str | None = None
    style: PromptStyle = "raw"
    n_shot: int = 0
    demos: DemoMode = "shared"
    n_train: int | None = 100
    n_dev: int | None = 50
    n_test: int | None = 200
    grid: str = "run"
    metric: Metric = "accuracy"
    batch_size: int = 32
    seed: int = 0
    n_boot: int = N_BOOT
    device: str | None = None
    out: str = "runs/transfer"

    def __post_init__(self) -> None:
        get_method(self.method)  # an unknown name lists the valid ones
        for what, names in (("tasks", self.tasks), ("targets", self.target_names)):
            if not names:
                raise ValueError(f"give at least one of {what}")
            if len(set(names)) != len(names):
                raise ValueError(f"{what} listed twice: {', '.join(names)}")
            for name in names:
                if is_mc_name(name):
                    raise ValueError(
                        f"{name} is scored by MC1/MC2 over whole answers, not by the transfer "
                        "table's protocols: run it with `steerlens run --task truthfulqa`"
                    )
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}; valid: {METRICS}")
        if self.grid not in ("run", "reproduce", "quick"):
            raise ValueError(f"grid must be 'run', 'reproduce' or 'quick', got {self.grid!r}")
        for name in ("n_train", "n_dev", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive or None (the whole split), got {value}")
        if self.batch_size < 1 or self.n_shot < 0 or self.n_boot < 1:
            raise ValueError("batch_size and n_boot must be >= 1 and n_shot >= 0")

    @property
    def target_names(self) -> tuple[str, ...]:
        return self.tasks if self.targets is None else self.targets


@dataclass(frozen=True)
class SourceChoice:
    """A source's mask and strength as chosen on its dev split, with the unsteered dev scores."""

    choice: Choice
    dev_baseline: EvalResult
    n_pairs: int


@dataclass(frozen=True)
class TransferResult:
    """Each source's choice, each (source, target) test result, each target's unsteered one."""

    sources: dict[str, SourceChoice]
    scores: dict[tuple[str, str], EvalResult]
    unsteered: dict[str, EvalResult]
    rows: list[dict[str, Any]]
    out: Path
    table: str
    seconds: float


def default_task_loader(config: TransferConfig) -> TaskLoader:
    """Load a task by name, formatted as the config says, with its split limits."""

    def load(name: str, model: HookedTransformer) -> Task:
        task = load_task(
            name,
            data_dir=config.data_dir,
            style=config.style,
            n_shot=config.n_shot,
            tokenizer=model.tokenizer,
            seed=config.seed,
            demos=config.demos,
        )
        return task.with_limits(train=config.n_train, dev=config.n_dev, test=config.n_test)

    return load


def check_tasks(config: TransferConfig) -> None:
    """Load every named task unformatted (cheap, no model), so bad names or files fail first."""
    for name in dict.fromkeys((*config.tasks, *config.target_names)):
        raw = load_task(name, data_dir=config.data_dir, seed=config.seed)
        if "generation" in raw.info or is_mc_task(raw):
            raise ValueError(f"{name} is not scored by option (generation or MC1/MC2 task)")


def run_transfer(
    config: TransferConfig,
    *,
    model: HookedTransformer | None = None,
    task_loader: TaskLoader | None = None,
    progress: bool = True,
) -> TransferResult:
    """Tune the method on each source's dev split, score it on every target's test split, write
    results.md, results.csv, config.json and each source's mask to `config.out`.

    `task_loader(name, model) -> Task` replaces loading by name (tests); it skips `check_tasks`.
    """
    clock = time.perf_counter()
    if task_loader is None:
        check_tasks(config)
    model = model or load_model(config.model, device=config.device)
    load = task_loader or default_task_loader(config)
    method = get_method(config.method)
    names = list(dict.fromkeys((*config.tasks, *config.target_names)))
    tasks = {name: load(name, model) for name in names}
    for name in config.tasks:
        if not tasks[name].train or not tasks[name].dev:
            raise ValueError(f"{name}: the source needs train and dev items")
    for name in config.target_names:
        if not tasks[name].test:
            raise ValueError(f"{name}: the target's test split is empty")

    sources: dict[str, SourceChoice] = {}
    for source in tqdm(config.tasks, desc="transfer: sources", disable=not progress):
        task = tasks[source]
        diffs = method_differences(
            model, task, [method], batch_size=config.batch_size, seed=config.seed
        )[method.differences_key]
        settings, strengths = method.grid_spec(config.grid, model.cfg.n_layers)
        grid = Grid(method.grid(diffs, settings), strengths)
        dev_base, chosen = choose_on_dev(
            model,
            encode_items(model, task.dev),
            {source: grid},
            metric=config.metric,
            batch_size=config.batch_size,
        )
        sources[source] = SourceChoice(chosen[source], dev_base, diffs.n_pairs)
    picked = {s: (c.choice.mask, c.choice.strength) for s, c in sources.items()}
    scores: dict[tuple[str, str], EvalResult] = {}
    unsteered: dict[str, EvalResult] = {}
    for target in tqdm(config.target_names, desc="transfer: targets", disable=not progress):
        test = encode_items(model, tasks[target].test)
        base, scored = score_on_test(model, test, picked, batch_size=config.batch_size)
        unsteered[target] = base
        scores.update({(s, target): r for s, r in scored.items()})
    rows = transfer_rows(config, sources, scores, unsteered)
    seconds = time.perf_counter() - clock
    out = Path(config.out)
    table = transfer_markdown(config, rows, sources, tasks, seconds)
    atomic_write_text(out / "results.md", table)
    atomic_write_text(out / "results.csv", transfer_csv(rows))
    meta = {"config": dataclasses.asdict(config), "seconds": seconds}
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2, default=jsonable))
    for source, c in sources.items():
        c.choice.mask.save(out / "masks" / f"{_slug(source)}.safetensors")
    return TransferResult(sources, scores, unsteered, rows, out, table, seconds)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def transfer_rows(
    config: TransferConfig,
    sources: dict[str, SourceChoice],
    scores: dict[tuple[str, str], EvalResult],
    unsteered: dict[str, EvalResult],
) -> list[dict[str, Any]]:
    """One flat row per (source, target, protocol), and the unsteered target ("none")."""
    method = get_method(config.method)
    rows = []
    for target in config.target_names:
        base = unsteered[target]
        for source in (None, *config.tasks):
            result = base if source is None else scores[(source, target)]
            choice = None if source is None else sources[source].choice
            for proto in METRICS:
                lo, hi = result.ci(proto, n_boot=config.n_boot, seed=config.seed)
                d = d_lo = d_hi = math.nan
                mine, theirs = result.flags(proto), base.flags(proto)
                if source is not None and mine is not None and theirs is not None:
                    d, d_lo, d_hi = paired_bootstrap_ci(
                        mine.numpy(), theirs.numpy(), n_boot=config.n_boot, seed=config.seed
                    )
                rows.append(
                    {
                        "model": config.model or EMBEDDED_MODEL,
                        "method": "none" if source is None else config.method,
                        "source": "none" if source is None else source,
                        "target": target,
                        "setting_name": "-" if choice is None else method.setting_name,
                        "setting": None if choice is None else jsonable(choice.setting),
                        "strength": 0.0 if choice is None else choice.strength,
                        "n_activations": 0 if choice is None else choice.mask.n_activations,
                        "n_pairs": 0 if source is None else sources[source].n_pairs,
                        "dev_source": math.nan if choice is None else choice.dev(config.metric),
                        "n_test": result.n,
                        "protocol": proto,
                        "test": result.metric(proto),
                        "test_lo": lo,
                        "test_hi": hi,
                        "unsteered": base.metric(proto),
                        "delta": d,
                        "delta_lo": d_lo,
                        "delta_hi": d_hi,
                        "verdict": "" if source is None else verdict(d_lo, d_hi),
                    }
                )
    return rows


def _cell(row: dict[str, Any], delta: bool) -> str:
    if not delta:
        return ci_text(row["test"], row["test_lo"], row["test_hi"])
    return delta_text(row["delta"], row["delta_lo"], row["delta_hi"], mark=True)


def transfer_matrix(rows: Sequence[dict[str, Any]], protocol: str, *, delta: bool = False) -> str:
    """Markdown: sources (rows, "none" first unless `delta`) x targets (columns) under
    `protocol`: test accuracy [95% CI], or with `delta` the paired difference to none."""
    mine = [r for r in rows if r["protocol"] == protocol]
    targets = list(dict.fromkeys(r["target"] for r in mine))
    sources = [s for s in dict.fromkeys(r["source"] for r in mine) if not (delta and s == "none")]
    by = {(r["source"], r["target"]): r for r in mine}
    lines = [
        "| source \\ target | " + " | ".join(targets) + " |",
        "|---" * (len(targets) + 1) + "|",
    ]
    for s in sources:
        cells = [_cell(by[(s, t)], delta) if (s, t) in by else "" for t in targets]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def transfer_markdown(
    config: TransferConfig,
    rows: Sequence[dict[str, Any]],
    sources: dict[str, SourceChoice],
    tasks: dict[str, Task],
    seconds: float,
) -> str:
    """The results document: each source's choice, then per protocol the two matrices."""
    sizes = "; ".join(
        f"{n}: {len(t.train)} pairs, dev {len(t.dev)}, test {len(t.test)}" for n, t in tasks.items()
    )
    parts = [
        f"# steerlens transfer: {config.method} ({config.model or EMBEDDED_MODEL})\n",
        f"Prompts: {config.style}, {config.n_shot}-shot. Sizes (first rows of each split): "
        f"{sizes}. Grid: `{config.grid}`; dev metric `{config.metric}`. Wall time "
        f"{seconds:.0f} s.\n",
        "Each source's mask is built from its train pairs and its K and strength are chosen on "
        "its own dev split (`steerlens.tune`); that fixed mask and strength are scored once on "
        "each target's test split. Intervals: 95% percentile bootstrap over test items; Δ = "
        "paired difference to the unsteered model on the target's items (+/−/0: the interval "
        "above 0, below 0, or containing it).\n",
        "## Chosen on the source's dev split\n",
        f"| source | setting | strength | #acts | pairs | dev {SHORT[config.metric]} | dev none |",
        "|---|---|---|---|---|---|---|",
    ]
    method = get_method(config.method)
    for source, c in sources.items():
        parts.append(
            f"| {source} | {method.setting_name}={c.choice.setting} | {c.choice.strength:g} | "
            f"{c.choice.mask.n_activations} | {c.n_pairs} | {pct(c.choice.dev(config.metric))} | "
            f"{pct(c.dev_baseline.metric(config.metric))} |"
        )
    parts.append("")
    for proto in METRICS:
        if all(math.isnan(r["test"]) for r in rows if r["protocol"] == proto):
            continue
        parts.append(f"## Test accuracy, `{SHORT[proto]}`\n")
        parts.append(transfer_matrix(rows, proto) + "\n")
        parts.append(f"Δ vs the unsteered target, `{SHORT[proto]}`:\n")
        parts.append(transfer_matrix(rows, proto, delta=True) + "\n")
    return "\n".join(parts)


def transfer_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of `transfer_rows` as CSV with `CSV_COLUMNS`."""
    return csv_text(rows, CSV_COLUMNS)
