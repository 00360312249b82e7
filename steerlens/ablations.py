"""Ablations of the papers, as functions returning plain data, with a plotly figure for each.

- `steer_less_curve`: accuracy against the number of steered atomic units, from 1 to thousands
  (AUSteer Table 12, "steering less achieves more").
- `promotion_vs_suppression`: AUSteer's promotion of the top-k units against suppressing the
  least important units (scaling them by a factor below 1; AUSteer Table 13).
- `adaptive_vs_fixed`: AUSteer's per-unit strength `gamma_i = alpha * beta_i` against one fixed
  strength for every selected unit (`weights = 1`; AUSteer Table 3, "fixed strength").
- `pairs_curve`: accuracy against the number of contrastive pairs (SADI Figure 4, AUSteer
  Figure 13).

Every function chooses its setting (number of units, strength, fraction, ...) on the task's dev
split and scores the test split once, like `steerlens.reproduce`; rows carry both protocols
(full-vocabulary accuracy and option-restricted accuracy) with 95% bootstrap intervals. Pass a
formatted, size-limited task (`load_task(...).with_limits(...)`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from .collect import Differences, collect_differences
from .evaluate import EncodedItems, EvalResult, encode_items, evaluate
from .mask import Mask
from .reproduce import (
    REPRODUCE_GRIDS,
    _jsonable,
    atomic_write_text,
    choose,
    eval_summary,
    fold_strength,
    paired_bootstrap_ci,
)
from .run import _methods
from .select import austeer_mask
from .sites import resolve_site
from .sweep import sweep
from .tasks import Task

DEFAULT_KS = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
_SITE_NAMES = {
    "head": "AUSteer-attention (hook_z dims)",
    "mlp_out": "AUSteer-FFN (MLP output dims)",
}


@dataclasses.dataclass
class Splits:
    """A task's dev and test items, encoded once, with the unsteered scores filled in on first use.

    Pass one `Splits` to several ablations of the same task to encode and score vanilla once.
    """

    dev: EncodedItems
    test: EncodedItems
    vanilla: dict[str, Any] | None = None

    @classmethod
    def of(cls, model: HookedTransformer, task: Task) -> Splits:
        return cls(encode_items(model, task.dev), encode_items(model, task.test))


def _splits(model: HookedTransformer, task: Task, splits: Splits | None) -> Splits:
    return splits if splits is not None else Splits.of(model, task)


def _diffs(
    model: HookedTransformer,
    task: Task,
    site: str | Sequence[str],
    diffs: Any,
    *,
    keep_pairs: bool = False,
    batch_size: int = 8,
) -> Any:
    if diffs is not None:
        return diffs
    return collect_differences(
        model, task.train, site=site, keep_pairs=keep_pairs, batch_size=batch_size,
        task=task.name, progress=False,
    )  # fmt: skip


def _summary(result: EvalResult, n_boot: int, vanilla: EvalResult | None = None) -> dict[str, Any]:
    """Test scores without the per-item flags (ablation rows stay small); with `vanilla` (the
    unsteered model on the same items) also the paired difference to it under both protocols,
    `delta_<metric>` = [mean, lo, hi] (95% paired bootstrap)."""
    summary = eval_summary(result, n_boot=n_boot)
    for key in ("correct", "correct_restricted"):
        summary.pop(key)
    if vanilla is not None:
        for metric, key in (("accuracy", "correct"), ("restricted", "correct_restricted")):
            summary[f"delta_{metric}"] = list(paired_bootstrap_ci(
                getattr(result, key).numpy(), getattr(vanilla, key).numpy(), n_boot=n_boot
            ))  # fmt: skip
    return summary


def _vanilla_row(splits: Splits) -> dict[str, Any]:
    assert splits.vanilla is not None
    return {"setting": None, "strength": 0.0, "n_units": 0, "n_activations": 0, **splits.vanilla}


def tune_many(
    model: HookedTransformer,
    splits: Splits,
    arms: Mapping[Hashable, tuple[Mapping[Hashable, Mask], Sequence[float]]],
    *,
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
) -> dict[Hashable, dict[str, Any]]:
    """For each arm (a grid of masks x strengths): choose the best dev cell, score test once.

    All arms' cells that steer the same positions share one dev `sweep` (strengths folded into
    the weights, `fold_strength`) and the chosen masks share one test sweep, so the unsteered
    model runs once per split and group rather than once per arm; the unsteered scores land in
    `splits.vanilla`. Returns `{arm: row}` with the chosen setting, strength, size, dev scores and
    test scores (both protocols, 95% intervals).
    """
    cells: dict[str, dict[tuple[Hashable, Hashable, float], Mask]] = {}
    for arm, (masks, strengths) in arms.items():
        for setting, mask in masks.items():
            for a in strengths:
                cells.setdefault(mask.positions, {})[(arm, setting, float(a))] = fold_strength(
                    mask, a
                )
    chosen: dict[Hashable, dict[str, Any]] = {}
    for group in cells.values():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*flip.* sign")
            res = sweep(model, splits.dev, group, [1.0], metric=metric, batch_size=batch_size,
                        progress=False)  # fmt: skip
        if splits.vanilla is None:
            splits.vanilla = {"dev_accuracy": res.baseline.accuracy,
                              "dev_restricted": res.baseline.restricted}  # fmt: skip
        index = {label: i for i, label in enumerate(res.settings)}
        for arm in dict.fromkeys(label[0] for label in group):
            masks, strengths = arms[arm]
            settings, strengths = list(masks), [float(a) for a in strengths]
            pick = [index[(arm, st, a)] for st in settings for a in strengths]
            shape = (len(settings), len(strengths))
            acc = res.accuracy[pick, 0].reshape(shape)
            restricted = res.restricted[pick, 0].reshape(shape)
            i, j = choose(*((acc, restricted) if metric == "accuracy" else (restricted, acc)))
            mask = masks[settings[i]]
            chosen[arm] = {
                "setting": _jsonable(settings[i]), "strength": strengths[j], "n_units": mask.k,
                "n_activations": mask.n_activations, "dev_accuracy": float(acc[i, j]),
                "dev_restricted": float(restricted[i, j]), "_mask": fold_strength(mask, strengths[j]),
            }  # fmt: skip
    by_positions: dict[str, dict[Hashable, Mask]] = {}
    for arm, row in chosen.items():
        mask = row.pop("_mask")
        by_positions.setdefault(mask.positions, {})[arm] = mask
    for group in by_positions.values():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*flip.* sign")
            res = sweep(model, splits.test, group, [1.0], metric=metric, batch_size=batch_size,
                        progress=False)  # fmt: skip
        if "test" not in (splits.vanilla or {}):
            splits.vanilla = {**(splits.vanilla or {}), "test": _summary(res.baseline, n_boot)}
        for k, arm in enumerate(res.settings):
            chosen[arm]["test"] = _summary(res.results[k], n_boot, vanilla=res.baseline)
    if splits.vanilla is None or "test" not in splits.vanilla:
        dev = evaluate(model, splits.dev, batch_size=batch_size, progress=False)
        test = evaluate(model, splits.test, batch_size=batch_size, progress=False)
        splits.vanilla = {"dev_accuracy": dev.accuracy, "dev_restricted": dev.restricted,
                          "test": _summary(test, n_boot)}  # fmt: skip
    return {arm: chosen[arm] for arm in arms}


def suppression_mask(diffs: Differences, n_units: int) -> Mask:
    """The `n_units` least important atomic units (lowest AUSteer score), weight 1 each.

    With `steer(..., strength=factor - 1)` each is scaled by `factor` (< 1 suppresses).
    """
    total = diffs.n_layers * int(torch.tensor(diffs.unit_shape).prod())
    full = austeer_mask(diffs, total)
    rev = torch.arange(total - 1, -1, -1)
    ranked = dataclasses.replace(
        full,
        method="suppression",
        layers=full.layers[rev],
        indices=full.indices[rev],
        scores=full.scores[rev],
        weights=torch.ones(total),
        info={**full.info, "k": total, "order": "least important first"},
    )
    return ranked.top(n_units)


def fixed_strength(mask: Mask, *, signed: bool = False) -> Mask:
    """The same units with one strength for all: weights 1 (or the sign of AUSteer's weight)."""
    weights = torch.sign(mask.weights) if signed else torch.ones(mask.k)
    weights = torch.where(weights == 0, torch.ones_like(weights), weights)
    return dataclasses.replace(mask, weights=weights, method=f"{mask.method}-fixed")


def _total_units(diffs: Differences) -> int:
    return diffs.n_layers * int(torch.tensor(diffs.unit_shape).prod())


# ------------------------------------------------------------------------------------------------
# 1. Accuracy vs number of steered units
# ------------------------------------------------------------------------------------------------


def steer_less_curve(
    model: HookedTransformer,
    task: Task,
    *,
    site: str = "mlp_out",
    ks: Sequence[int] = DEFAULT_KS,
    strengths: Sequence[float] = (2.0, 8.0, 32.0),
    diffs: Differences | None = None,
    splits: Splits | None = None,
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """AUSteer's top-k units for each k in `ks`; the strength is chosen on dev for each k.

    Returns one row per k (k = 0 is the unsteered model), each with the chosen strength, dev
    scores and the test accuracy under both protocols with 95% intervals.
    """
    site = resolve_site(site)
    diffs = _diffs(model, task, site, diffs)
    splits = _splits(model, task, splits)
    ks = sorted({min(int(k), _total_units(diffs)) for k in ks})
    full = austeer_mask(diffs, max(ks))
    arms = {k: ({k: full.top(k)}, strengths) for k in ks}
    out = tune_many(model, splits, arms, metric=metric, batch_size=batch_size, n_boot=n_boot)
    rows = [{"k": 0, "site": site, **_vanilla_row(splits)}]
    rows += [{"k": k, "site": site, "n_pairs": diffs.n_pairs, **out[k]} for k in ks]
    return rows


# ------------------------------------------------------------------------------------------------
# 2. Promotion vs suppression
# ------------------------------------------------------------------------------------------------


def promotion_vs_suppression(
    model: HookedTransformer,
    task: Task,
    *,
    site: str = "mlp_out",
    ks: Sequence[int] = (10, 100),
    alphas: Sequence[float] = (2.0, 8.0, 32.0),
    fractions: Sequence[float] = (0.5, 0.9, 0.99),
    factors: Sequence[float] = (0.05, 0.5, 0.9),
    diffs: Differences | None = None,
    splits: Splits | None = None,
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
) -> dict[str, dict[str, Any]]:
    """Vanilla, suppression of the least important units, and AUSteer promotion, each tuned on dev.

    Suppression scales the `fraction` of all units with the lowest AUSteer score by `factor`
    (AUSteer Table 13 swept 0.05-0.99 over 0-99.95% of the units); promotion is AUSteer (top-k,
    `x <- x (1 + alpha beta)`).
    """
    site = resolve_site(site)
    diffs = _diffs(model, task, site, diffs)
    splits = _splits(model, task, splits)
    total = _total_units(diffs)
    sup = suppression_mask(diffs, total)
    sup_masks: dict[Hashable, Mask] = {
        float(f): sup.top(max(1, round(f * total))) for f in sorted(set(fractions))
    }
    full = austeer_mask(diffs, max(ks))
    arms = {
        "suppression": (sup_masks, [float(c) - 1.0 for c in factors]),
        "promotion": ({k: full.top(k) for k in ks}, alphas),
    }
    out = tune_many(model, splits, arms, metric=metric, batch_size=batch_size, n_boot=n_boot)
    out["suppression"]["factor"] = 1.0 + out["suppression"]["strength"]
    return {
        "vanilla": {"site": site, **_vanilla_row(splits)},
        "suppression": {"site": site, "setting_name": "fraction of units", **out["suppression"]},
        "promotion": {"site": site, "setting_name": "k", **out["promotion"]},
    }


# ------------------------------------------------------------------------------------------------
# 3. Adaptive vs fixed strength
# ------------------------------------------------------------------------------------------------


def adaptive_vs_fixed(
    model: HookedTransformer,
    task: Task,
    *,
    site: str = "mlp_out",
    ks: Sequence[int] = (10, 100),
    strengths: Sequence[float] = (2.0, 8.0, 32.0),
    variants: Sequence[str] = ("adaptive", "fixed"),
    diffs: Differences | None = None,
    splits: Splits | None = None,
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
) -> dict[str, dict[str, Any]]:
    """AUSteer's adaptive per-unit strength against one strength for all selected units.

    Variants: "adaptive" (weights = AUSteer's signed consistency beta_i), "fixed" (weights = 1,
    the same gamma for every unit, as AUSteer's ablation), "fixed-signed" (weights = sign of
    beta_i: same magnitude, AUSteer's direction). Each is tuned on dev over `ks` x `strengths`.
    """
    site = resolve_site(site)
    known = ("adaptive", "fixed", "fixed-signed")
    if set(variants) - set(known):
        raise ValueError(f"variants must be among {known}, got {list(variants)}")
    diffs = _diffs(model, task, site, diffs)
    splits = _splits(model, task, splits)
    full = austeer_mask(diffs, max(ks))
    build = {
        "adaptive": lambda m: m,
        "fixed": lambda m: dataclasses.replace(m, weights=torch.ones(m.k), method="austeer-fixed"),
        "fixed-signed": lambda m: fixed_strength(m, signed=True),
    }
    arms = {v: ({k: build[v](full.top(k)) for k in ks}, strengths) for v in variants}
    out = tune_many(model, splits, arms, metric=metric, batch_size=batch_size, n_boot=n_boot)
    result: dict[str, dict[str, Any]] = {"vanilla": {"site": site, **_vanilla_row(splits)}}
    for v in variants:
        result[v] = {"site": site, "setting_name": "k", **out[v]}
    return result


# ------------------------------------------------------------------------------------------------
# 4. Accuracy vs number of contrastive pairs
# ------------------------------------------------------------------------------------------------


def pairs_curve(
    model: HookedTransformer,
    task: Task,
    *,
    methods: Sequence[str] = ("sadi-head", "austeer-ffn"),
    n_pairs: Sequence[int] = (10, 25, 50, 100, 150),
    seeds: Sequence[int] = (0,),
    grids: Mapping[str, tuple[Sequence[Any], Sequence[float]]] | None = None,
    splits: Splits | None = None,
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Masks built from `n` of the task's train pairs, for each n and method, tuned on dev.

    Pairs are collected once (`keep_pairs=True`, at most `len(task.train)`); seed 0 takes the
    first n pairs, other seeds a random subset of n. Methods and their grids come from
    `steerlens.reproduce.REPRODUCE_GRIDS` (else `steerlens.run`'s table); `grids` overrides
    `(settings, strengths)` per method.
    """
    table = _methods(model.cfg.n_layers)
    unknown = set(methods) - set(table)
    if unknown:
        raise ValueError(f"Unknown methods {sorted(unknown)}; valid: {list(table)}")
    chosen = [table[m] for m in methods]
    sites = sorted({m.site for m in chosen})
    available = len(task.train)
    full = collect_differences(
        model, task.train, site=sites, keep_pairs=True, batch_size=8, task=task.name,
        progress=False,
    )  # fmt: skip
    assert isinstance(full, dict)
    splits = _splits(model, task, splits)
    arms: dict[Hashable, tuple[Mapping[Hashable, Mask], Sequence[float]]] = {}
    for n in sorted({min(int(n), available) for n in n_pairs}):
        for seed in seeds:
            if seed == 0 or n == available:
                idx = torch.arange(n)
            else:
                idx = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:n]
            subset = {s: d.subset(idx) for s, d in full.items()}
            for method in chosen:
                default = REPRODUCE_GRIDS.get(method.name, (method.settings, method.strengths))
                settings, strengths = (grids or {}).get(method.name, default)
                settings = method.settings if settings is None else tuple(settings)
                arms[(method.name, n, seed)] = (method.grid(subset, settings), tuple(strengths))
            if n == available:
                break  # every seed would draw the same full set
    out = tune_many(model, splits, arms, metric=metric, batch_size=batch_size, n_boot=n_boot)
    rows: list[dict[str, Any]] = [
        {"method": "none", "n_pairs": 0, "seed": None, **_vanilla_row(splits)}
    ]
    for (name, n, seed), row in out.items():
        rows.append({"method": name, "n_pairs": n, "seed": seed,
                     "setting_name": table[name].setting_name, **row})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _err(
    rows: Sequence[Mapping[str, Any]], metric: str
) -> tuple[list[float], list[float], list[float]]:
    y = [100 * r["test"][metric] for r in rows]
    lo = [100 * (r["test"][metric] - r["test"][f"{metric}_ci"][0]) for r in rows]
    hi = [100 * (r["test"][f"{metric}_ci"][1] - r["test"][metric]) for r in rows]
    return y, lo, hi


_PROTOCOLS = (("accuracy", "full-vocabulary"), ("restricted", "restricted to options"))
_COLORS = {"accuracy": "#636efa", "restricted": "#ef553b"}
_CORNER = {"accuracy": "top left", "restricted": "bottom right"}


def _baseline_lines(fig: Any, base: Mapping[str, Any] | None) -> None:
    """Dotted lines at the unsteered accuracy, one per protocol, labelled apart."""
    if base is None:
        return
    for metric, name in _PROTOCOLS:
        fig.add_hline(
            y=100 * base["test"][metric], line_dash="dot", line_color=_COLORS[metric],
            annotation_text=f"no steering ({name})", annotation_position=_CORNER[metric],
            annotation_font_color=_COLORS[metric],
        )  # fmt: skip


def figure_steer_less(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Any:
    """Accuracy (both protocols, 95% CI) against the number of steered units, log x axis."""
    import plotly.graph_objects as go

    steered = [r for r in rows if r["k"] > 0]
    base = next((r for r in rows if r["k"] == 0), None)
    fig = go.Figure()
    for metric, name in _PROTOCOLS:
        y, lo, hi = _err(steered, metric)
        fig.add_trace(go.Scatter(
            x=[r["k"] for r in steered], y=y, mode="lines+markers", name=name,
            line_color=_COLORS[metric],
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
        ))  # fmt: skip
    _baseline_lines(fig, base)
    site = steered[0]["site"] if steered else ""
    fig.update_layout(
        title=title or f"Steer less: accuracy vs number of steered units ({_SITE_NAMES.get(site, site)})",
        xaxis={"title": "steered atomic units k", "type": "log"},
        yaxis={"title": "test accuracy (%)"},
    )  # fmt: skip
    return fig


def _bars(result: Mapping[str, Mapping[str, Any]], title: str) -> Any:
    import plotly.graph_objects as go

    names = list(result)
    fig = go.Figure()
    for metric, label in _PROTOCOLS:
        y, lo, hi = _err([result[n] for n in names], metric)
        fig.add_trace(go.Bar(
            x=names, y=y, name=label,
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
        ))  # fmt: skip
    fig.update_layout(title=title, barmode="group", yaxis={"title": "test accuracy (%)"})
    return fig


def figure_promotion_vs_suppression(result: Mapping[str, Mapping[str, Any]]) -> Any:
    """Grouped bars: vanilla, suppression, promotion under both protocols with 95% CIs."""
    return _bars(result, "Promotion (AUSteer) vs suppression of the least important units")


def figure_adaptive_vs_fixed(result: Mapping[str, Mapping[str, Any]]) -> Any:
    """Grouped bars: vanilla, adaptive and fixed strength under both protocols with 95% CIs."""
    return _bars(result, "Adaptive (AUSteer) vs fixed strength on the same units")


def figure_pairs(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Accuracy against the number of contrastive pairs: one colour per method, solid for the
    full-vocabulary protocol and dashed for the restricted one (95% CIs); dotted: no steering."""
    import plotly.graph_objects as go

    palette = ("#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692")
    fig = go.Figure()
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "none"]
    for n, method in enumerate(methods):
        sub = sorted((r for r in rows if r["method"] == method), key=lambda r: r["n_pairs"])
        for metric, label in _PROTOCOLS:
            y, lo, hi = _err(sub, metric)
            fig.add_trace(go.Scatter(
                x=[r["n_pairs"] for r in sub], y=y, mode="lines+markers",
                name=f"{method} ({label})",
                line={"color": palette[n % len(palette)],
                      "dash": "solid" if metric == "accuracy" else "dash"},
                error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                text=[f"K={r['setting']}, strength={r['strength']:g}" for r in sub],
            ))  # fmt: skip
    _baseline_lines(fig, next((r for r in rows if r["method"] == "none"), None))
    fig.update_layout(
        title="Accuracy vs number of contrastive pairs",
        xaxis={"title": "contrastive pairs"}, yaxis={"title": "test accuracy (%)"},
    )  # fmt: skip
    return fig


def save(fig: Any, path: str | os.PathLike[str]) -> list[Path]:
    """Save through `steerlens.figures.save_figure` when it exists, else as standalone HTML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from .figures import save_figure  # type: ignore[attr-defined]
    except ImportError:
        save_figure = None
    if save_figure is not None:
        saved = save_figure(fig, path)
        if isinstance(saved, (list, tuple)):
            return [Path(p) for p in saved]
        return [Path(saved)] if saved is not None else [path]
    html = path.with_suffix(".html")
    fig.write_html(str(html), include_plotlyjs="cdn")
    return [html]


# ------------------------------------------------------------------------------------------------
# Driver and command line
# ------------------------------------------------------------------------------------------------

ABLATIONS = ("steer-less", "promotion", "adaptive", "pairs")


def run_ablations(
    model: HookedTransformer,
    task: Task,
    out: str | os.PathLike[str],
    *,
    which: Sequence[str] = ABLATIONS,
    site: str = "mlp_out",
    ks: Sequence[int] = DEFAULT_KS,
    strengths: Sequence[float] = (2.0, 8.0, 32.0),
    n_pairs: Sequence[int] = (10, 25, 50, 100, 150),
    fractions: Sequence[float] = (0.5, 0.9, 0.99),
    factors: Sequence[float] = (0.05, 0.5, 0.9),
    figures_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    n_boot: int = 2000,
    quick: bool = False,
) -> dict[str, Any]:
    """Run the chosen ablations on one task; write `<out>/ablation-<name>-<task>.json` and a
    figure for each (into `figures_dir`). The dev/test encodings and the unsteered scores are
    shared by all ablations. `quick` shrinks every grid to 2 x 2 (CI)."""
    unknown = set(which) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"Unknown ablations {sorted(unknown)}; valid: {list(ABLATIONS)}")
    out = Path(out)
    fig_dir = Path(figures_dir) if figures_dir is not None else out
    if quick:
        strengths = tuple(strengths)[:2]
    small = {"ks": (10, 30)} if quick else {}
    kw = {"batch_size": batch_size, "n_boot": n_boot}
    splits = Splits.of(model, task)
    diffs = None
    if {"steer-less", "promotion", "adaptive"} & set(which):
        diffs = _diffs(model, task, site, None)
    results: dict[str, Any] = {}
    stem = f"{task.name}-{task.n_shot}shot"
    for name in which:
        clock = time.perf_counter()
        if name == "steer-less":
            data: Any = steer_less_curve(model, task, site=site, ks=ks, strengths=strengths,
                                         diffs=diffs, splits=splits, **kw)  # fmt: skip
            fig = figure_steer_less(data)
        elif name == "promotion":
            cut = 2 if quick else None
            extra = {"fractions": tuple(fractions)[:cut], "factors": tuple(factors)[:cut]}
            data = promotion_vs_suppression(model, task, site=site, alphas=strengths, diffs=diffs,
                                            splits=splits, **small, **extra, **kw)  # fmt: skip
            fig = figure_promotion_vs_suppression(data)
        elif name == "adaptive":
            data = adaptive_vs_fixed(model, task, site=site, strengths=strengths, diffs=diffs,
                                     splits=splits, variants=("adaptive", "fixed", "fixed-signed"),
                                     **small, **kw)  # fmt: skip
            fig = figure_adaptive_vs_fixed(data)
        else:
            grids = {"sadi-head": ((1, 4), (0.5, 4.0)), "austeer-ffn": ((10, 30), (2.0, 8.0))}
            data = pairs_curve(model, task, n_pairs=n_pairs, splits=splits,
                               grids=grids if quick else None, **kw)  # fmt: skip
            fig = figure_pairs(data)
        seconds = time.perf_counter() - clock
        record = {"ablation": name, "task": task.name, "n_shot": task.n_shot, "site": site,
                  "sizes": {"train_pairs": len(task.train), "dev": len(task.dev),
                            "test": len(task.test)},
                  "seconds": seconds, "data": data}  # fmt: skip
        atomic_write_text(out / f"ablation-{name}-{stem}.json", json.dumps(record, indent=1))
        paths = save(fig, fig_dir / f"ablation-{name}-{stem}")
        results[name] = {"data": data, "seconds": seconds, "figures": [str(p) for p in paths]}
        print(f"  {name}: {seconds:.0f} s -> {', '.join(map(str, paths))}", flush=True)
    return results


def add_parser(sub: Any) -> None:
    """`steerlens ablations`: the four ablations on one benchmark task, with figures."""
    p = sub.add_parser("ablations", help="steer-less curve, promotion/suppression, adaptive/fixed, "
                       "pairs curve on one task, with figures")  # fmt: skip
    p.add_argument("--data", "--data-dir", dest="data_dir", default=None)
    p.add_argument("--model", default=None, help="model name (default: embedded SmolLM2-135M)")
    p.add_argument("--task", default="sst2")
    p.add_argument("--n-shot", type=int, default=4)
    p.add_argument("--n-train", type=int, default=150)
    p.add_argument("--n-dev", type=int, default=100)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--site", default="mlp_out", choices=["head", "mlp_out"])
    p.add_argument("--which", nargs="+", default=list(ABLATIONS), choices=ABLATIONS)
    p.add_argument(
        "--ks",
        nargs="+",
        type=int,
        default=list(DEFAULT_KS),
        help="numbers of steered units for the steer-less curve",
    )
    p.add_argument(
        "--strengths",
        nargs="+",
        type=float,
        default=[2.0, 8.0, 32.0],
        help="AUSteer alphas tried on dev (steer-less, promotion, adaptive)",
    )
    p.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=[0.5, 0.9, 0.99],
        help="promotion vs suppression: fractions of units suppressed",
    )
    p.add_argument(
        "--factors",
        nargs="+",
        type=float,
        default=[0.05, 0.5, 0.9],
        help="promotion vs suppression: factors the suppressed units are scaled by",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--n-pairs", nargs="+", type=int, default=[10, 25, 50, 100, 150])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--figures", default="figures", help="where the figures go")
    p.add_argument("--quick", action="store_true", help="tiny grids (CI)")
    p.add_argument("--device", default=None)


def main(args: Any) -> int:
    from .models import load_model
    from .tasks import load_task

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    task = load_task(
        args.task, data_dir=args.data_dir, n_shot=args.n_shot, tokenizer=model.tokenizer
    )
    task = task.with_limits(train=args.n_train, dev=args.n_dev, test=args.n_test)
    start = time.perf_counter()
    run_ablations(model, task, args.out, which=args.which, site=args.site, ks=args.ks,
                  strengths=args.strengths, n_pairs=args.n_pairs, fractions=args.fractions,
                  factors=args.factors, figures_dir=args.figures,
                  batch_size=args.batch_size, quick=args.quick)  # fmt: skip
    print(f"ablations done in {time.perf_counter() - start:.0f} s; data in {args.out}")
    return 0


COMMAND = (add_parser, main)
