"""The main job: every method on one model and task, tuned on dev, scored once on test.

`run_job(RunConfig(...))` loads the model and task, collects paired differences at all four sites
in one pass over the train split, sweeps each method's grid of (K or layer, strength) on the dev
split, scores the test split once with the chosen setting, and writes a results table
(markdown and CSV) with bootstrap intervals, the grids, the chosen masks and the timings.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformer_lens import HookedTransformer

from .baselines import caa_mask, fixed_vector_mask, iti_mask, random_mask
from .collect import Differences, collect_differences
from .evaluate import EvalResult, encode_items, evaluate
from .mask import Mask
from .models import load_model
from .select import austeer_mask, sadi_mask
from .steer import steer
from .sweep import SweepResult, sweep
from .tasks import Task, format_task, load_task

Grid = Callable[[dict[str, Differences], Sequence[Any]], dict[Hashable, Mask]]


@dataclass(frozen=True)
class Method:
    """A steering method: the site it reads, how its masks are built, and its default grid."""

    name: str
    site: str
    grid: Grid
    settings: tuple[Any, ...]
    strengths: tuple[float, ...]
    setting_name: str = "K"


def _prefixes(build: Callable[[dict[str, Differences], int], Mask]) -> Grid:
    """Grid of `top(k)` prefixes of one mask built with the largest k."""

    def grid(diffs: dict[str, Differences], ks: Sequence[int]) -> dict[Hashable, Mask]:
        full = build(diffs, max(ks))
        return {k: full.top(k) for k in ks}

    return grid


def _caa_grid(diffs: dict[str, Differences], layers: Sequence[int]) -> dict[Hashable, Mask]:
    return {layer: caa_mask(diffs["resid"], layer) for layer in layers}


def _methods(n_layers: int) -> dict[str, Method]:
    quarter = [max(0, round(n_layers * f)) for f in (0.33, 0.5, 0.67)]
    return {
        m.name: m
        for m in [
            Method("sadi-head", "head", _prefixes(lambda d, k: sadi_mask(d["head"], k)),
                   (1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0)),
            Method("sadi-neuron", "neuron", _prefixes(lambda d, k: sadi_mask(d["neuron"], k)),
                   (5, 10, 30, 100), (0.5, 1.0, 2.0, 4.0)),
            Method("sadi-hidden", "mlp_out", _prefixes(lambda d, k: sadi_mask(d["mlp_out"], k)),
                   (2, 4, 8, 16), (0.5, 1.0, 2.0, 4.0)),
            Method("austeer-attention", "head", _prefixes(lambda d, k: austeer_mask(d["head"], k)),
                   (10, 30, 100), (1.0, 4.0, 16.0)),
            Method("austeer-ffn", "mlp_out", _prefixes(lambda d, k: austeer_mask(d["mlp_out"], k)),
                   (10, 30, 100), (1.0, 4.0, 16.0)),
            Method("caa", "resid", _caa_grid, tuple(quarter), (0.5, 1.0, 2.0), "layer"),
            Method("iti", "head", _prefixes(lambda d, k: iti_mask(d["head"], k)),
                   (2, 4, 8), (1.0, 2.0, 4.0)),
            Method("sadi-head-fixed-vector", "head",
                   _prefixes(lambda d, k: fixed_vector_mask(sadi_mask(d["head"], k), d["head"])),
                   (1, 2, 4, 8), (0.5, 1.0, 2.0, 4.0)),
            Method("sadi-head-random", "head",
                   _prefixes(lambda d, k: random_mask(sadi_mask(d["head"], k), seed=0)),
                   (1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0)),
        ]
    }  # fmt: skip


METHOD_NAMES = tuple(_methods(30))


@dataclass
class RunConfig:
    """Everything a run depends on; saved next to its results."""

    model: str | None = None
    task: str = "sentiment"
    data_dir: str | None = None
    style: str = "raw"
    n_shot: int = 0
    n_train: int | None = 150
    n_dev: int | None = 100
    n_test: int | None = 300
    methods: tuple[str, ...] = METHOD_NAMES
    metric: str = "accuracy"
    batch_size: int = 32
    seed: int = 0
    device: str | None = None
    out: str = "runs/main"


@dataclass
class MethodResult:
    """One row of the results table."""

    method: str
    site: str
    setting_name: str
    setting: Any
    strength: float
    n_units: int
    n_activations: int
    dev: float
    test: EvalResult
    sweep: SweepResult | None = field(default=None, repr=False)


def load_raw_task(config: RunConfig) -> Task:
    """Load the unformatted task (cheap, no model needed): bad names or paths fail here, early."""
    return load_task(config.task, data_dir=config.data_dir, seed=config.seed)


def prepare_task(config: RunConfig, model: HookedTransformer, raw: Task | None = None) -> Task:
    """Format the task for the model, keeping the first rows of each split as the config says."""
    raw = raw if raw is not None else load_raw_task(config)
    task = format_task(
        raw, config.style, tokenizer=model.tokenizer, n_shot=config.n_shot, seed=config.seed
    )
    return task.with_limits(train=config.n_train, dev=config.n_dev, test=config.n_test)


def run_job(config: RunConfig, *, model: HookedTransformer | None = None) -> dict[str, Any]:
    """Run every configured method; returns the rows, timings and output paths."""
    unknown = set(config.methods) - set(METHOD_NAMES)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; valid: {list(METHOD_NAMES)}")
    raw = load_raw_task(config)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    if model is None:
        model = load_model(config.model, device=config.device)
    timings["load model"] = time.perf_counter() - clock

    clock = time.perf_counter()
    task = prepare_task(config, model, raw)
    methods = [_methods(model.cfg.n_layers)[name] for name in config.methods]
    sites = sorted({m.site for m in methods})
    diffs = collect_differences(
        model, task.train, site=sites, batch_size=config.batch_size // 2 or 1, seed=config.seed,
        task=task.name, progress=True,
    )  # fmt: skip
    assert isinstance(diffs, dict)
    timings["collect differences"] = time.perf_counter() - clock

    clock = time.perf_counter()
    dev = encode_items(model, task.dev)
    sweeps = {}
    for method in methods:
        grid = method.grid(diffs, method.settings)
        sweeps[method.name] = sweep(
            model, dev, grid, method.strengths, metric=config.metric,
            batch_size=config.batch_size, progress=True,
        )  # fmt: skip
        print(f"  tuned {method.name}: best {method.setting_name}, strength, dev = "
              f"{sweeps[method.name].best}")  # fmt: skip
    timings["tune on dev"] = time.perf_counter() - clock

    clock = time.perf_counter()
    test = encode_items(model, task.test)
    baseline = evaluate(model, test, batch_size=config.batch_size)
    dev_base = next(iter(sweeps.values())).baseline.metric(config.metric) if sweeps else float("nan")
    rows = [MethodResult("none", "-", "-", "-", 0.0, 0, 0, dev_base, baseline)]
    for method in methods:
        result = sweeps[method.name]
        setting, strength, dev_score = result.best
        mask = result.masks[setting]
        with steer(model, mask, strength):
            scored = evaluate(model, test, batch_size=config.batch_size)
        rows.append(MethodResult(
            method.name, method.site, method.setting_name, setting, strength, mask.k,
            mask.n_activations, dev_score, scored, result,
        ))  # fmt: skip
    timings["score test"] = time.perf_counter() - clock
    return write_results(config, task, rows, timings)


def results_table(rows: Sequence[MethodResult], *, metric: str = "accuracy") -> str:
    """Markdown table: test accuracy (95% bootstrap CI) under both protocols per method."""
    lines = [
        "| method | site | setting | strength | #units | #acts | dev | test accuracy [95% CI] "
        "| test restricted [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r.test.ci("accuracy")
        rlo, rhi = r.test.ci("restricted")
        setting = "-" if r.method == "none" else f"{r.setting_name}={r.setting}"
        lines.append(
            f"| {r.method} | {r.site} | {setting} | {r.strength:g} | {r.n_units} | "
            f"{r.n_activations} | {100 * r.dev:.1f} | {100 * r.test.accuracy:.1f} "
            f"[{100 * lo:.1f}, {100 * hi:.1f}] | {100 * r.test.restricted:.1f} "
            f"[{100 * rlo:.1f}, {100 * rhi:.1f}] |"
        )
    return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(
    config: RunConfig, task: Task, rows: Sequence[MethodResult], timings: dict[str, float]
) -> dict[str, Any]:
    """Write results.md, results.csv, grids.csv, config.json and the chosen masks to `config.out`."""
    out = Path(config.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    sizes = f"train {len(task.train)} pairs, dev {len(task.dev)}, test {len(task.test)}"
    header = (
        f"# steerlens results: {task.name} ({task.style}, {task.n_shot}-shot)\n\n"
        f"Model: {config.model or 'SmolLM2-135M-Instruct (embedded)'}; {sizes}. K and strength "
        f"chosen on dev by {config.metric}; test scored once. `accuracy` = full-vocabulary "
        "argmax equals the answer's first token (the papers' metric); `restricted` = the correct "
        "option has the highest log-probability among the options.\n\n"
    )
    timing = "\n".join(f"- {k}: {v:.1f} s" for k, v in timings.items())
    _atomic_write(out / "results.md", header + results_table(rows) + f"\n\nWall time:\n{timing}\n")
    with open(out / "results.csv.tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "site", "setting_name", "setting", "strength", "n_units",
                         "n_activations", "dev", "test_accuracy", "test_accuracy_lo",
                         "test_accuracy_hi", "test_restricted", "test_restricted_lo",
                         "test_restricted_hi", "n_test"])  # fmt: skip
        for r in rows:
            writer.writerow([r.method, r.site, r.setting_name, r.setting, r.strength, r.n_units,
                             r.n_activations, r.dev, r.test.accuracy, *r.test.ci("accuracy"),
                             r.test.restricted, *r.test.ci("restricted"), r.test.n])  # fmt: skip
    os.replace(out / "results.csv.tmp", out / "results.csv")
    with open(out / "grids.csv.tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "setting", "strength", "dev_accuracy", "dev_restricted"])
        for r in rows:
            for cell in r.sweep.rows() if r.sweep else []:
                writer.writerow([r.method, cell["setting"], cell["strength"], cell["accuracy"],
                                 cell["restricted"]])  # fmt: skip
    os.replace(out / "grids.csv.tmp", out / "grids.csv")
    for r in rows:
        if r.sweep is not None:
            r.sweep.masks[r.setting].save(out / "masks" / f"{r.method}.safetensors")
    meta = {"config": dataclasses.asdict(config), "timings_s": timings, "task": repr(task)}
    _atomic_write(out / "config.json", json.dumps(meta, indent=2, default=str))
    return {"rows": list(rows), "timings": timings, "out": out, "table": results_table(rows)}
