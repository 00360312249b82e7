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
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

from .collect import Differences, collect_differences
from .evaluate import EncodedItems, encode_items, evaluate
from .mask import Mask
from .reproduce import atomic_write_text, eval_summary, tune_and_score
from .run import _methods
from .select import austeer_mask
from .sites import resolve_site
from .tasks import Task

DEFAULT_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_SITE_NAMES = {"head": "AUSteer-attention (hook_z dims)", "mlp_out": "AUSteer-FFN (MLP output dims)"}


@dataclasses.dataclass
class _Splits:
    dev: EncodedItems
    test: EncodedItems


def _encode(model: HookedTransformer, task: Task) -> _Splits:
    return _Splits(encode_items(model, task.dev), encode_items(model, task.test))


def _diffs(
    model: HookedTransformer,
    task: Task,
    site: str | Sequence[str],
    diffs: Differences | Mapping[str, Differences] | None,
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


def _vanilla(model: HookedTransformer, splits: _Splits, batch_size: int, n_boot: int) -> dict[str, Any]:
    dev = evaluate(model, splits.dev, batch_size=batch_size, progress=False)
    test = evaluate(model, splits.test, batch_size=batch_size, progress=False)
    return {
        "setting": None,
        "strength": 0.0,
        "n_units": 0,
        "n_activations": 0,
        "dev_accuracy": dev.accuracy,
        "dev_restricted": dev.restricted,
        "test": eval_summary(test, n_boot=n_boot),
    }


def _row(out: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A `tune_and_score` result as a compact row (drops the mask and the per-item flags)."""
    row = {k: v for k, v in out.items() if k not in ("mask", "grid")}
    test = dict(row.pop("test"))
    for key in ("correct", "correct_restricted"):
        test.pop(key, None)
    return {**extra, **row, "test": test}


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


# ------------------------------------------------------------------------------------------------
# 1. Accuracy vs number of steered units
# ------------------------------------------------------------------------------------------------


def steer_less_curve(
    model: HookedTransformer,
    task: Task,
    *,
    site: str = "mlp_out",
    ks: Sequence[int] = DEFAULT_KS,
    strengths: Sequence[float] = (1.0, 4.0, 16.0),
    diffs: Differences | None = None,
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
    splits = _encode(model, task)
    total = diffs.n_layers * int(torch.tensor(diffs.unit_shape).prod())
    ks = sorted({min(int(k), total) for k in ks})
    full = austeer_mask(diffs, max(ks))
    rows = [{"k": 0, "site": site, **_strip_vanilla(_vanilla(model, splits, batch_size, n_boot))}]
    for k in ks:
        out = tune_and_score(
            model, splits.dev, splits.test, {k: full.top(k)}, strengths, metric=metric,
            batch_size=batch_size, n_boot=n_boot,
        )  # fmt: skip
        rows.append(_row(out, k=k, site=site, n_pairs=diffs.n_pairs))
    return rows


# ------------------------------------------------------------------------------------------------
# 2. Promotion vs suppression
# ------------------------------------------------------------------------------------------------


def promotion_vs_suppression(
    model: HookedTransformer,
    task: Task,
    *,
    site: str = "mlp_out",
    ks: Sequence[int] = (10, 30, 100),
    alphas: Sequence[float] = (1.0, 4.0, 16.0),
    fractions: Sequence[float] = (0.5, 0.9, 0.99),
    factors: Sequence[float] = (0.05, 0.5, 0.9),
    diffs: Differences | None = None,
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
    splits = _encode(model, task)
    total = diffs.n_layers * int(torch.tensor(diffs.unit_shape).prod())
    sup = suppression_mask(diffs, total)
    sup_masks: dict[Hashable, Mask] = {
        float(f): sup.top(max(1, round(f * total))) for f in sorted(set(fractions))
    }
    suppressed = tune_and_score(
        model, splits.dev, splits.test, sup_masks, [float(c) - 1.0 for c in factors],
        metric=metric, batch_size=batch_size, n_boot=n_boot,
    )  # fmt: skip
    full = austeer_mask(diffs, max(ks))
    promoted = tune_and_score(
        model, splits.dev, splits.test, {k: full.top(k) for k in ks}, alphas, metric=metric,
        batch_size=batch_size, n_boot=n_boot,
    )  # fmt: skip
    sup_row = _row(suppressed, site=site, setting_name="fraction of units")
    sup_row["factor"] = 1.0 + sup_row["strength"]
    return {
        "vanilla": {"site": site, **_strip_vanilla(_vanilla(model, splits, batch_size, n_boot))},
        "suppression": sup_row,
        "promotion": _row(promoted, site=site, setting_name="k"),
    }


def _strip_vanilla(row: dict[str, Any]) -> dict[str, Any]:
    test = {k: v for k, v in row["test"].items() if k not in ("correct", "correct_restricted")}
    return {**row, "test": test}


# ------------------------------------------------------------------------------------------------
# 3. Adaptive vs fixed strength
# ------------------------------------------------------------------------------------------------


def adaptive_vs_fixed(
    model: HookedTransformer,
    task: Task,
    *,
    site: str = "mlp_out",
    ks: Sequence[int] = (10, 30, 100),
    strengths: Sequence[float] = (1.0, 4.0, 16.0),
    variants: Sequence[str] = ("adaptive", "fixed"),
    diffs: Differences | None = None,
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
    splits = _encode(model, task)
    full = austeer_mask(diffs, max(ks))
    build = {
        "adaptive": lambda m: m,
        "fixed": lambda m: dataclasses.replace(m, weights=torch.ones(m.k), method="austeer-fixed"),
        "fixed-signed": lambda m: fixed_strength(m, signed=True),
    }
    result: dict[str, dict[str, Any]] = {
        "vanilla": {"site": site, **_strip_vanilla(_vanilla(model, splits, batch_size, n_boot))}
    }
    for variant in variants:
        masks = {k: build[variant](full.top(k)) for k in ks}
        out = tune_and_score(
            model, splits.dev, splits.test, masks, strengths, metric=metric,
            batch_size=batch_size, n_boot=n_boot,
        )  # fmt: skip
        result[variant] = _row(out, site=site, setting_name="k")
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
    metric: str = "accuracy",
    batch_size: int = 16,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Masks built from `n` of the task's train pairs, for each n and method, tuned on dev.

    Pairs are collected once (`keep_pairs=True`, at most `len(task.train)`); seed 0 takes the
    first n pairs, other seeds a random subset of n. Methods and their default grids come from
    `steerlens.run`'s method table; `grids` overrides `(settings, strengths)` per method.
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
    splits = _encode(model, task)
    rows: list[dict[str, Any]] = [
        {"method": "none", "n_pairs": 0, "seed": None, **_strip_vanilla(_vanilla(model, splits, batch_size, n_boot))}
    ]
    for n in sorted({min(int(n), available) for n in n_pairs}):
        for seed in seeds:
            if seed == 0 or n == available:
                idx = torch.arange(n)
            else:
                idx = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:n]
            subset = {s: d.subset(idx) for s, d in full.items()}
            for method in chosen:
                settings, strengths = (grids or {}).get(method.name, (method.settings, method.strengths))
                masks = method.grid(subset, tuple(settings))
                out = tune_and_score(
                    model, splits.dev, splits.test, masks, tuple(strengths), metric=metric,
                    batch_size=batch_size, n_boot=n_boot,
                )  # fmt: skip
                rows.append(_row(out, method=method.name, n_pairs=n, seed=seed,
                                 setting_name=method.setting_name))  # fmt: skip
            if n == available:
                break  # every seed would draw the same full set
    return rows


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------


def _err(rows: Sequence[Mapping[str, Any]], metric: str) -> tuple[list[float], list[float], list[float]]:
    y = [100 * r["test"][metric] for r in rows]
    lo = [100 * (r["test"][metric] - r["test"][f"{metric}_ci"][0]) for r in rows]
    hi = [100 * (r["test"][f"{metric}_ci"][1] - r["test"][metric]) for r in rows]
    return y, lo, hi


_PROTOCOLS = (("accuracy", "full-vocabulary"), ("restricted", "restricted to options"))


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
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
        ))  # fmt: skip
        if base is not None:
            fig.add_hline(y=100 * base["test"][metric], line_dash="dot",
                          annotation_text=f"no steering ({name})")  # fmt: skip
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
    """Accuracy against the number of contrastive pairs, one line per method and protocol."""
    import plotly.graph_objects as go

    fig = go.Figure()
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "none"]
    for method in methods:
        for metric, label in _PROTOCOLS:
            sub = sorted((r for r in rows if r["method"] == method), key=lambda r: r["n_pairs"])
            y, lo, hi = _err(sub, metric)
            fig.add_trace(go.Scatter(
                x=[r["n_pairs"] for r in sub], y=y, mode="lines+markers",
                name=f"{method} ({label})",
                error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            ))  # fmt: skip
    base = next((r for r in rows if r["method"] == "none"), None)
    if base is not None:
        for metric, label in _PROTOCOLS:
            fig.add_hline(y=100 * base["test"][metric], line_dash="dot",
                          annotation_text=f"no steering ({label})")  # fmt: skip
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
    n_pairs: Sequence[int] = (10, 25, 50, 100, 150),
    figures_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    quick: bool = False,
) -> dict[str, Any]:
    """Run the chosen ablations on one task; write `<out>/<name>.json` and a figure for each."""
    unknown = set(which) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"Unknown ablations {sorted(unknown)}; valid: {list(ABLATIONS)}")
    out = Path(out)
    fig_dir = Path(figures_dir) if figures_dir is not None else out
    small = {"ks": (10, 30), "strengths": (1.0, 4.0)} if quick else {}
    diffs = None
    if {"steer-less", "promotion", "adaptive"} & set(which):
        diffs = collect_differences(model, task.train, site=site, batch_size=8, task=task.name,
                                    progress=False)  # fmt: skip
    results: dict[str, Any] = {}
    stem = f"{task.name}-{task.n_shot}shot"
    for name in which:
        clock = time.perf_counter()
        if name == "steer-less":
            data: Any = steer_less_curve(model, task, site=site, ks=ks, diffs=diffs,
                                         batch_size=batch_size,
                                         **({"strengths": small["strengths"]} if quick else {}))  # fmt: skip
            fig = figure_steer_less(data)
        elif name == "promotion":
            extra = {"ks": small["ks"], "alphas": small["strengths"], "fractions": (0.5, 0.9),
                     "factors": (0.5, 0.9)} if quick else {}  # fmt: skip
            data = promotion_vs_suppression(model, task, site=site, diffs=diffs,
                                            batch_size=batch_size, **extra)  # fmt: skip
            fig = figure_promotion_vs_suppression(data)
        elif name == "adaptive":
            data = adaptive_vs_fixed(model, task, site=site, diffs=diffs, batch_size=batch_size,
                                     variants=("adaptive", "fixed", "fixed-signed"), **small)  # fmt: skip
            fig = figure_adaptive_vs_fixed(data)
        else:
            grids = {"sadi-head": ((1, 4), (0.5, 1.0)), "austeer-ffn": ((10, 30), (1.0, 4.0))}
            data = pairs_curve(model, task, n_pairs=n_pairs, batch_size=batch_size,
                               grids=grids if quick else None)  # fmt: skip
            fig = figure_pairs(data)
        seconds = time.perf_counter() - clock
        record = {"ablation": name, "task": task.name, "n_shot": task.n_shot,
                  "sizes": {"train_pairs": len(task.train), "dev": len(task.dev),
                            "test": len(task.test)},
                  "seconds": seconds, "data": data}  # fmt: skip
        atomic_write_text(out / f"ablation-{name}-{stem}.json", json.dumps(record, indent=1))
        paths = save(fig, fig_dir / f"ablation-{name}-{stem}")
        results[name] = {"data": data, "seconds": seconds, "figures": [str(p) for p in paths]}
        print(f"  {name}: {seconds:.0f} s -> {', '.join(map(str, paths))}")
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
    p.add_argument("--ks", nargs="+", type=int, default=list(DEFAULT_KS))
    p.add_argument("--n-pairs", nargs="+", type=int, default=[10, 25, 50, 100, 150])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--figures", default="figures", help="where the figures go")
    p.add_argument("--quick", action="store_true", help="tiny grids (CI)")
    p.add_argument("--device", default=None)


def main(args: Any) -> int:
    from .models import load_model
    from .tasks import load_task

    model = load_model(args.model, device=args.device)
    task = load_task(args.task, data_dir=args.data_dir, n_shot=args.n_shot, tokenizer=model.tokenizer)
    task = task.with_limits(train=args.n_train, dev=args.n_dev, test=args.n_test)
    start = time.perf_counter()
    run_ablations(model, task, args.out, which=args.which, site=args.site, ks=args.ks,
                  n_pairs=args.n_pairs, figures_dir=args.figures, batch_size=args.batch_size,
                  quick=args.quick)  # fmt: skip
    print(f"ablations done in {time.perf_counter() - start:.0f} s; data in {args.out}")
    return 0


COMMAND = (add_parser, main)
