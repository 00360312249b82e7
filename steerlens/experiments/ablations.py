"""The papers' ablations, tuned on dev and scored once on test like every other driver.

- `steer_less_curve`: accuracy against the number of steered atomic units (AUSteer Table 12).
- `promotion_vs_suppression`: AUSteer's top-k promotion against scaling down the least important
  units (AUSteer Table 13).
- `adaptive_vs_fixed`: AUSteer's per-unit strength against one strength for all selected units
  (AUSteer Table 3, "fixed strength").
- `pairs_curve`: accuracy against the number of contrastive pairs (SADI Figure 4, AUSteer
  Figure 13), with the pair subsets of `steerlens.analysis.pair_subsets`.

Each function returns JSON-ready rows (`Record.to_json` without per-item flags, plus the paired
difference to the unsteered model, `test.delta_<metric>` = [mean, lo, hi]); the figures of
`steerlens.figures` draw them. `run_ablations` runs several on one task and writes data and figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._backend import HookedTransformer
from .._io import atomic_write_text
from .._types import Metric
from ..analysis import pair_subsets
from ..baselines import fixed_strength, suppression_mask
from ..collect import Differences
from ..evaluate import METRICS, EncodedItems, EvalResult, encode_items
from ..mask import Mask
from ..methods import BASELINE, get_method
from ..select import austeer_mask
from ..sites import resolve_site
from ..stats import N_BOOT, paired_bootstrap_ci
from ..tasks import Task
from ..tune import ArmT, Grid, TuneResult, tune
from ._shared import task_differences
from .records import Record

STEER_LESS_KS = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
ALPHAS = (2.0, 8.0, 32.0)  # AUSteer strengths tried on dev
PAIR_COUNTS = (10, 25, 50, 100, 150)
ABLATIONS = ("steer-less", "promotion", "adaptive", "pairs")
Row = dict[str, Any]


@dataclass(frozen=True)
class Splits:
    """A task's dev and test items, encoded once and shared by several ablations."""

    dev: EncodedItems
    test: EncodedItems

    @classmethod
    def of(cls, model: HookedTransformer, task: Task) -> Splits:
        return cls(encode_items(model, task.dev), encode_items(model, task.test))


@dataclass(frozen=True)
class AblationConfig:
    """Grids and sizes of `run_ablations`; `quick` shrinks every grid to 2 x 2 (CI)."""

    which: tuple[str, ...] = ABLATIONS
    site: str = "mlp_out"
    ks: tuple[int, ...] = STEER_LESS_KS
    unit_counts: tuple[int, ...] = (10, 100)  # promotion and adaptive-vs-fixed: top-k sizes
    strengths: tuple[float, ...] = ALPHAS
    n_pairs: tuple[int, ...] = PAIR_COUNTS
    fractions: tuple[float, ...] = (0.5, 0.9, 0.99)
    factors: tuple[float, ...] = (0.05, 0.5, 0.9)
    metric: Metric = "accuracy"
    batch_size: int = 16
    n_boot: int = N_BOOT
    quick: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.which) - set(ABLATIONS)
        if unknown:
            raise ValueError(f"Unknown ablations {sorted(unknown)}; valid: {list(ABLATIONS)}")
        object.__setattr__(self, "site", resolve_site(self.site))
        if self.quick:
            object.__setattr__(self, "unit_counts", (10, 30))
            object.__setattr__(self, "strengths", tuple(self.strengths)[:2])
            object.__setattr__(self, "fractions", tuple(self.fractions)[:2])
            object.__setattr__(self, "factors", tuple(self.factors)[:2])


def _rows(result: TuneResult[ArmT], n_boot: int) -> dict[ArmT, Row]:
    """JSON rows per arm (no per-item flags) with the paired difference to the unsteered model."""
    out: dict[ArmT, Row] = {}
    for arm, tuned in result.arms.items():
        mask = tuned.choice.mask
        record = Record.from_choice(
            str(arm),
            tuned.choice,
            site=mask.site,
            setting_name="k",
            n_pairs=mask.info.get("n_pairs", 0),
            dev_baseline=result.dev_baseline,
        ).scored(tuned.test, n_boot=n_boot)
        row = record.to_json(flags=False)
        for key in (
            "grid",
            "units",
            "dev_baseline",
            "stage",
            "model",
            "task",
            "format",
            "published",
        ):
            row.pop(key, None)
        row["test"].update(_deltas(tuned.test, result.test_baseline, n_boot))
        out[arm] = row
    return out


def _deltas(steered: EvalResult, vanilla: EvalResult, n_boot: int) -> dict[str, list[float]]:
    out = {}
    for metric in METRICS:
        mine, theirs = steered.flags(metric), vanilla.flags(metric)
        if mine is not None and theirs is not None:
            out[f"delta_{metric}"] = list(
                paired_bootstrap_ci(mine.numpy(), theirs.numpy(), n_boot=n_boot)
            )
    return out


def _vanilla(result: TuneResult[Any], n_boot: int, **fields: Any) -> Row:
    record = Record.unsteered(result.dev_baseline).scored(result.test_baseline, n_boot=n_boot)
    row = record.to_json(flags=False)
    keep = (
        "dev_accuracy",
        "dev_restricted",
        "dev_paper",
        "test",
        "setting",
        "strength",
        "n_units",
        "n_activations",
    )
    return {**fields, **{k: row[k] for k in keep}}


def _tune(
    model: HookedTransformer, splits: Splits, arms: Mapping[ArmT, Grid], config: AblationConfig
) -> TuneResult[ArmT]:
    return tune(
        model, splits.dev, splits.test, arms, metric=config.metric, batch_size=config.batch_size
    )


def steer_less_curve(
    model: HookedTransformer, diffs: Differences, splits: Splits, config: AblationConfig
) -> list[Row]:
    """AUSteer's top-k units for each k of `config.ks`, the strength chosen on dev for each k.
    Row k = 0 is the unsteered model."""
    total = diffs.n_layers * int(torch.tensor(diffs.unit_shape).prod())
    ks = sorted({min(int(k), total) for k in config.ks})
    full = austeer_mask(diffs, max(ks))
    result = _tune(model, splits, {k: Grid({k: full.top(k)}, config.strengths) for k in ks}, config)
    rows = _rows(result, config.n_boot)
    return [_vanilla(result, config.n_boot, k=0, site=diffs.site)] + [
        {"k": k, "site": diffs.site, **rows[k]} for k in ks
    ]


def promotion_vs_suppression(
    model: HookedTransformer, diffs: Differences, splits: Splits, config: AblationConfig
) -> dict[str, Row]:
    """Vanilla, suppression of the least important units (the fraction with the lowest AUSteer
    score, scaled by a factor < 1) and AUSteer promotion (top-k), each tuned on dev."""
    ks = config.unit_counts
    total = diffs.n_layers * int(torch.tensor(diffs.unit_shape).prod())
    sup = suppression_mask(diffs, total)
    sup_masks: dict[Hashable, Mask] = {
        float(f): sup.top(max(1, round(f * total))) for f in sorted(set(config.fractions))
    }
    full = austeer_mask(diffs, min(max(ks), total))
    arms = {
        "suppression": Grid(sup_masks, tuple(float(c) - 1.0 for c in config.factors)),
        "promotion": Grid({k: full.top(min(k, full.k)) for k in ks}, config.strengths),
    }
    result = _tune(model, splits, arms, config)
    rows = _rows(result, config.n_boot)
    rows["suppression"]["factor"] = 1.0 + rows["suppression"]["strength"]
    return {
        "vanilla": _vanilla(result, config.n_boot, site=diffs.site),
        "suppression": {
            "site": diffs.site,
            **rows["suppression"],
            "setting_name": "fraction of units",
        },
        "promotion": {"site": diffs.site, **rows["promotion"]},
    }


def adaptive_vs_fixed(
    model: HookedTransformer,
    diffs: Differences,
    splits: Splits,
    config: AblationConfig,
    variants: Sequence[str] = ("adaptive", "fixed", "fixed-signed"),
) -> dict[str, Row]:
    """AUSteer's adaptive weights (`beta_i`) against weights 1 ("fixed", the paper's ablation)
    and `sign(beta_i)` ("fixed-signed"), each tuned on dev over K x strength."""
    known = ("adaptive", "fixed", "fixed-signed")
    if set(variants) - set(known):
        raise ValueError(f"variants must be among {known}, got {list(variants)}")
    ks = config.unit_counts
    full = austeer_mask(diffs, max(ks))
    build = {
        "adaptive": lambda m: m,
        "fixed": fixed_strength,
        "fixed-signed": lambda m: fixed_strength(m, signed=True),
    }
    arms = {v: Grid({k: build[v](full.top(k)) for k in ks}, config.strengths) for v in variants}
    result = _tune(model, splits, arms, config)
    rows = _rows(result, config.n_boot)
    out = {"vanilla": _vanilla(result, config.n_boot, site=diffs.site)}
    return out | {str(v): {"site": diffs.site, **rows[v]} for v in variants}


def pairs_curve(
    model: HookedTransformer,
    task: Task,
    splits: Splits,
    config: AblationConfig,
    methods: Sequence[str] = ("sadi-head", "austeer-ffn"),
    seeds: Sequence[int] = (0,),
) -> list[Row]:
    """Masks built from subsets of the train pairs (`pair_subsets`), each method's grid tuned
    on dev for every (pair count, seed)."""
    chosen = [get_method(m) for m in methods]
    full = task_differences(
        model, task, {m.site for m in chosen}, batch_size=config.batch_size, keep_pairs=True
    )
    available = len(task.train)
    arms: dict[tuple[str, int, int], Grid] = {}
    counts = {min(int(n), available) for n in config.n_pairs}  # more than collected: all of them
    for (n, seed), idx in pair_subsets(available, sorted(counts), seeds).items():
        subset = {s: (d if idx is None else d.subset(idx)) for s, d in full.items()}
        for m in chosen:
            settings, strengths = m.grid_spec(
                "quick" if config.quick else "reproduce", model.cfg.n_layers
            )
            arms[(m.name, n, seed)] = Grid(m.grid(subset[m.site], settings), strengths)
    result = _tune(model, splits, arms, config)
    rows = _rows(result, config.n_boot)
    out = [_vanilla(result, config.n_boot, method=BASELINE, n_pairs=0, seed=None)]
    for (name, n, seed), row in rows.items():
        setting_name = get_method(name).setting_name
        out.append(
            {**row, "method": name, "n_pairs": n, "seed": seed, "setting_name": setting_name}
        )
    return out


def run_ablations(
    model: HookedTransformer,
    task: Task,
    out: str | Path,
    config: AblationConfig,
    *,
    figures_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run `config.which` on one task; write `<out>/ablation-<name>-<task>-<k>shot.json` and a
    figure for each (into `figures_dir`, default `out`). Returns `{name: {"data", "seconds",
    "figures"}}`."""
    from .. import figures  # drawing is only needed here, after the computation

    out, fig_dir = Path(out), Path(figures_dir) if figures_dir is not None else Path(out)
    splits = Splits.of(model, task)
    needs_diffs = {"steer-less", "promotion", "adaptive"} & set(config.which)
    diffs = (
        task_differences(model, task, [config.site], batch_size=config.batch_size)[config.site]
        if needs_diffs
        else None
    )
    stem = f"{task.name}-{task.n_shot}shot"
    label = f"{task.name} {task.n_shot}-shot"
    model_name = model.cfg.model_name
    results: dict[str, Any] = {}
    for name in config.which:
        clock = time.perf_counter()
        data: Any
        if name == "pairs":
            data = pairs_curve(model, task, splits, config)
            fig = figures.ablation_pairs_figure(data, task=label, model=model_name)
        else:
            assert diffs is not None
            if name == "steer-less":
                data = steer_less_curve(model, diffs, splits, config)
                fig = figures.steer_less_figure(data, task=label, model=model_name)
            elif name == "promotion":
                data = promotion_vs_suppression(model, diffs, splits, config)
                fig = figures.promotion_figure(data, task=label, model=model_name)
            else:
                data = adaptive_vs_fixed(model, diffs, splits, config)
                fig = figures.adaptive_figure(data, task=label, model=model_name)
        seconds = time.perf_counter() - clock
        record = {
            "ablation": name,
            "task": task.name,
            "n_shot": task.n_shot,
            "site": config.site,
            "sizes": {"train_pairs": len(task.train), "dev": len(task.dev), "test": len(task.test)},
            "seconds": seconds,
            "data": data,
        }
        atomic_write_text(out / f"ablation-{name}-{stem}.json", json.dumps(record, indent=1))
        paths = figures.save_figure(fig, fig_dir / f"ablation-{name}-{stem}")
        results[name] = {"data": data, "seconds": seconds, "figures": [str(p) for p in paths]}
    return results


__all__ = [
    "ABLATIONS",
    "AblationConfig",
    "Splits",
    "adaptive_vs_fixed",
    "pairs_curve",
    "promotion_vs_suppression",
    "run_ablations",
    "steer_less_curve",
]
