"""The figures of the set, one function each, with captions computed from the data.

Each `fig_*` function reads a `FigureContext` (model, task, differences, the main job's results)
and adds one figure to it; `steerlens.experiments.figure_set.make_figures` runs them in order.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import analysis, figures
from .._backend import HookedTransformer
from ..collect import Differences
from ..evaluate import EncodedItems
from ..figures.units import random_overlap
from ..mask import Mask
from ..methods import BASELINE, METHODS
from ..select import austeer_mask, sadi_mask, sadi_scores
from ..stats import paired_bootstrap_ci, str_to_flags
from ..tasks import Task, format_task, load_task
from ._shared import task_differences
from .main_job import RunConfig, RunResult, run_job
from .report import delta_text

DEFAULT_TASK = "sentiment"
BUILTIN_OVERLAP = ("sentiment", "larger", "arithmetic")
TOP_HEADS = 8  # SADI heads shown in figures 1 and 3
TOP_UNITS = 100  # units in figures 2, 3 and 6 (the papers' top-100)


@dataclass(frozen=True)
class FiguresConfig:
    """What `make_figures` depends on (sizes are the first rows of each split)."""

    task: str = DEFAULT_TASK
    data_dir: str | None = None
    model_name: str | None = None
    overlap_tasks: tuple[str, ...] | None = None
    n_shot: int | None = None  # None: `default_shots(task)` (4 for the built-in sentiment task)
    n_train: int = 80
    n_dev: int = 40
    n_test: int = 60
    pair_sizes: tuple[int, ...] = (10, 20, 40)
    seeds: tuple[int, ...] = (0, 1, 2)
    scan_strengths: tuple[float, ...] = (4.0, 16.0, 64.0)
    writes_strength: float = 100.0
    formats: tuple[str, ...] = ("png",)
    methods: tuple[str, ...] | None = None
    batch_size: int = 32


@dataclass
class FigureEntry:
    """One figure of the set: its file stem, title, one-sentence caption and written files."""

    name: str
    title: str
    caption: str
    paths: list[Path] = field(default_factory=list)

    @property
    def number(self) -> str:
        """The figure number, e.g. "4a" for "fig4a_..."; else the name."""
        match = re.match(r"fig(\d+[a-z]?)_", self.name)
        return match.group(1) if match else self.name


@dataclass
class FigureContext:
    """What every figure function reads: the model, task, differences, main job and output."""

    model: HookedTransformer
    config: FiguresConfig
    task: Task
    diffs: dict[str, Differences]
    test: EncodedItems
    job: RunResult
    run: RunConfig
    out: Path
    say: Callable[[str], None]
    entries: list[FigureEntry] = field(default_factory=list)

    def add(self, name: str, fig: Any, caption: str) -> None:
        paths = figures.save_figure(fig, self.out / name, formats=self.config.formats)
        self.entries.append(FigureEntry(name, fig.layout.title.text, caption, paths))
        self.say(f"wrote {name}")

    def ran(self, method: str) -> bool:
        return method in self.job.choices

    @property
    def k_au(self) -> int:
        cfg = self.model.cfg
        return min(TOP_UNITS, cfg.n_layers * cfg.d_model, cfg.n_layers * cfg.n_heads * cfg.d_head)

    def heads(self) -> Mask:
        cfg = self.model.cfg
        return sadi_mask(self.diffs["head"], min(TOP_HEADS, cfg.n_layers * cfg.n_heads))


def _layers_text(layers: Sequence[int]) -> str:
    """Where units sit: every layer for a few units, else the span and the commonest layer."""
    arr = np.asarray(layers)
    counts = np.bincount(arr)
    if arr.size <= 10:
        parts = [
            f"{layer}" + (f" (x{counts[layer]})" if counts[layer] > 1 else "")
            for layer in sorted(set(arr.tolist()))
        ]
        return ("layer " if len(parts) == 1 else "layers ") + ", ".join(parts)
    mode = int(counts.argmax())
    return f"layers {int(arr.min())}-{int(arr.max())} ({counts[mode]} in layer {mode})"


def _thirds(layers: Sequence[int], n_layers: int) -> str:
    """Share of units in the early / middle / late third of the model."""
    counts = np.bincount(np.asarray(layers) * 3 // n_layers, minlength=3)
    return f"{counts[0]} early / {counts[1]} middle / {counts[2]} late"


CONTROL_METHODS = ("sadi-head", "austeer-attention", "caa")


def one_label_seed(task: Task, n_shot: int, *, tries: int = 200) -> int | None:
    """The first demonstration seed whose `n_shot` shared demonstrations all carry one answer
    (a prompt that teaches a label bias), or None within `tries` seeds."""
    for seed in range(tries):
        rows = format_task(task, n_shot=n_shot, seed=seed).info["format"]["demo_rows"]
        if len({task.train[j].answer for j in rows}) == 1:
            return seed
    return None


def fig_control(ctx: FigureContext) -> None:
    """A positive control: the task after demonstrations that all carry one answer, which the
    model copies; steering built from the contrastive pairs should pull it back to the input."""
    n_shot = ctx.task.n_shot
    raw = load_task(ctx.config.task, data_dir=ctx.config.data_dir)
    seed = one_label_seed(raw, n_shot) if n_shot else None
    if seed is None:
        ctx.say("positive control skipped: needs k-shot demonstrations that share one answer")
        return
    answer = raw.train[format_task(raw, n_shot=n_shot, seed=seed).info["format"]["demo_rows"][0]]
    run = dataclasses.replace(ctx.run, seed=seed, methods=CONTROL_METHODS)
    ctx.say(
        f"positive control: {ctx.task.name} after {n_shot} demonstrations all answering "
        f"{answer.answer!r} (demonstration seed {seed})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        job = run_job(dataclasses.replace(run, out=tmp), model=ctx.model, progress=False)
    base = job.record(BASELINE).test
    assert base is not None
    parts = []
    for r in job.records:
        if r.method == BASELINE or r.test is None:
            continue
        d, lo, hi = paired_bootstrap_ci(
            str_to_flags(r.test.flags("accuracy")), str_to_flags(base.flags("accuracy"))
        )
        parts.append(f"{r.method} {delta_text(d, lo, hi)} ({_resolved(lo, hi)})")
    chance = float(np.mean([1 / (1 + len(ex.wrong)) for ex in job.task.test])) if job.task else None
    title = (
        f"Positive control: {ctx.task.name}, {n_shot} demonstrations all answering "
        f"{answer.answer.strip()!r} ({len(job.task.test) if job.task else '?'} test items, "
        f"{ctx.model.cfg.model_name})"
    )
    ctx.add(
        "fig0_positive_control",
        figures.method_comparison(job.records, title=title, chance=chance),
        f"A setting where steering has a clear effect, to compare the null results against: "
        f"every prompt of {ctx.task.name} follows the same {n_shot} demonstrations, all "
        f"answering {answer.answer.strip()!r} (demonstration seed {seed}), and the unsteered "
        f"model copies that answer: {100 * base.accuracy:.1f}% on test. Masks are built from "
        f"the train pairs and K and strength chosen on dev as in the main job; paired "
        f"differences to unsteered on the same test items: " + "; ".join(parts) + ".",
    )


def fig_heads(ctx: FigureContext) -> None:
    heads = ctx.heads()
    signed = sadi_scores(ctx.diffs["head"]).flatten()
    largest = signed.abs().topk(heads.k).indices
    negative = int((signed[largest] < 0).sum())
    ctx.add(
        "fig1_head_heatmap",
        figures.head_heatmap(ctx.diffs["head"], heads),
        f"Signed mean difference of every head's output (hook_z averaged over d_head) on "
        f"{ctx.task.name}; the top-{heads.k} SADI heads sit in "
        f"{_layers_text(heads.layers.tolist())}, the best is {heads.label(0)} "
        f"({float(heads.scores[0]):.3g}). Outlined are the {heads.k} most positive heads: SADI "
        f"ranks by the signed difference, as its released code does, so of the {heads.k} heads "
        f"with the largest |difference|, the {negative} negative ones are not outlined "
        f'(`sadi_mask(..., by="abs")` ranks by size).',
    )


def fig_layers(ctx: FigureContext) -> None:
    cfg = ctx.model.cfg
    k = min(TOP_UNITS, cfg.n_layers * cfg.d_model)
    dist = {
        "neurons (mlp.hook_post)": sadi_mask(ctx.diffs["neuron"], k),
        "hidden dims (hook_mlp_out)": sadi_mask(ctx.diffs["mlp_out"], k),
        "residual dims (hook_resid_post)": sadi_mask(ctx.diffs["resid"], k),
    }
    parts = [
        f"{label.split(' (')[0]} in {_layers_text(m.layers.tolist())}, "
        f"{_thirds(m.layers.tolist(), cfg.n_layers)}"
        for label, m in dist.items()
    ]
    ctx.add(
        "fig2_top100_layers",
        figures.layer_distribution(dist),
        f"Layers of the top-{k} units by SADI's signed mean difference: " + "; ".join(parts) + ".",
    )


def fig_overlap(ctx: FigureContext) -> None:
    c, t = ctx.config, ctx.task
    names = list(c.overlap_tasks) if c.overlap_tasks else list(BUILTIN_OVERLAP)
    if t.name not in names and c.task not in names:
        names.insert(0, c.task)
    per_task: dict[str, dict[str, Differences]] = {}
    for name in names:
        if name in (c.task, t.name):
            per_task[t.name] = ctx.diffs
            continue
        ctx.say(f"collecting differences on {name} for the overlap figure")
        other = load_task(name, data_dir=c.data_dir, tokenizer=ctx.model.tokenizer)
        other = other.with_limits(train=c.n_train)
        per_task[other.name] = task_differences(
            ctx.model, other, ["head", "mlp_out"], batch_size=c.batch_size
        )
    if len(per_task) < 2:
        ctx.say("overlap figure skipped: it compares at least two tasks")
        return
    k_heads, k_au = ctx.heads().k, ctx.k_au
    families = {
        f"SADI heads (K={k_heads})": {
            n: sadi_mask(d["head"], k_heads) for n, d in per_task.items()
        },
        f"AUSteer attention AUs (k={k_au})": {
            n: austeer_mask(d["head"], k_au) for n, d in per_task.items()
        },
        f"AUSteer FFN AUs (k={k_au})": {
            n: austeer_mask(d["mlp_out"], k_au) for n, d in per_task.items()
        },
    }
    summary = []
    for fam, masks in families.items():
        _, shared, jac = figures.overlap_counts(masks)
        off = ~np.eye(len(masks), dtype=bool)
        chance = random_overlap(list(masks.values()))
        summary.append(
            f"{fam.split(' (')[0]} share {int(shared[off].min())}-{int(shared[off].max())} "
            f"units (Jaccard up to {jac[off].max():.2f}; two random masks of these sizes would "
            f"share {chance:.2g})"
        )
    ctx.add(
        "fig3_cross_task_overlap",
        figures.overlap_matrix(families),
        f"Units selected on {', '.join(per_task)} ({c.n_train} pairs each), compared pairwise: "
        + "; ".join(summary)
        + ".",
    )


def fig_sweeps(ctx: FigureContext) -> None:
    for method, letter in (("sadi-head", "a"), ("austeer-attention", "b")):
        if not ctx.ran(method):
            continue
        sw = ctx.job.sweep(method)
        setting, strength, score = sw.best
        ctx.add(
            f"fig4{letter}_{method}_sweep",
            figures.sweep_heatmap(sw, label=method),
            f"Dev accuracy of {method} over the main job's grid ({len(ctx.task.dev)} dev items): "
            f"chosen K={setting} at strength {strength:g} with {100 * score:.1f}% against "
            f"{100 * sw.baseline.accuracy:.1f}% unsteered; the grid spans "
            f"{100 * sw.accuracy.min():.1f}-{100 * sw.accuracy.max():.1f}%.",
        )


def _with_k(build: Callable[[Differences, int], Mask], k: int) -> Callable[[Differences], Mask]:
    """`build` with its number of units fixed to `k`."""
    return lambda diffs: build(diffs, k)


def fig_pairs(ctx: FigureContext) -> None:
    builders: dict[str, Callable[[Differences, int], Mask]] = {
        "sadi-head": sadi_mask,
        "sadi-neuron": sadi_mask,
        "austeer-attention": austeer_mask,
    }
    curve_methods: dict[str, tuple[str, Callable[[Differences], Mask], float]] = {}
    for method, build in builders.items():
        if ctx.ran(method):
            r = ctx.job.record(method)
            k = int(r.setting)
            curve_methods[f"{method} (K={k}, strength {r.strength:g})"] = (
                METHODS[method].site,
                _with_k(build, k),
                float(r.strength),
            )
    if not curve_methods:
        return
    sizes = sorted({*ctx.config.pair_sizes, len(ctx.task.train)})
    ctx.say(
        f"pairs curve: {len(curve_methods)} methods x sizes {sizes} x {len(ctx.config.seeds)} seeds"
    )
    records = analysis.pairs_curve_data(
        ctx.model,
        ctx.diffs,
        ctx.test,
        curve_methods,
        sizes=sizes,
        seeds=ctx.config.seeds,
        batch_size=ctx.config.batch_size,
    )
    curve = figures.pairs_summary(records)
    bits = [
        f"{m.split(' (')[0]} {100 * s['mean'][0]:.1f}% at {s['n'][0]} pairs vs "
        f"{100 * s['mean'][-1]:.1f}% at {s['n'][-1]}"
        for m, s in curve.items()
    ]
    base = ctx.job.record(BASELINE).test
    ctx.add(
        "fig5_pairs_curve",
        figures.pairs_curve(records),
        f"Test accuracy ({len(ctx.task.test)} items) when each method's mask (at its tuned K "
        "and strength) is built from fewer pairs: "
        + "; ".join(bits)
        + f" (unsteered {100 * base.accuracy if base else float('nan'):.1f}%).",
    )


def _au_masks(ctx: FigureContext) -> dict[str, Mask]:
    return {
        "attention (hook_z, flattened)": austeer_mask(ctx.diffs["head"], ctx.k_au),
        "FFN (hook_mlp_out)": austeer_mask(ctx.diffs["mlp_out"], ctx.k_au),
    }


def fig_au_scores(ctx: FigureContext) -> None:
    masks = _au_masks(ctx)
    panels = {
        "attention (hook_z, flattened)": ctx.diffs["head"],
        "FFN (hook_mlp_out)": ctx.diffs["mlp_out"],
    }
    bits = [
        f"{label.split(' (')[0]}: top-{ctx.k_au} s from {float(m.scores[-1]):.2f} to "
        f"{float(m.scores[0]):.2f}, in {_layers_text(m.layers.tolist())}, "
        f"{int((m.weights < 0).sum())} suppressive"
        for label, m in masks.items()
    ]
    ctx.add(
        "fig6_au_score_map",
        figures.au_score_map(panels, masks=masks),
        "AUSteer's sign-consistency score s of every atomic unit (crosses: the top-"
        f"{ctx.k_au}); " + "; ".join(bits) + ".",
    )


def fig_unit_vs_block(ctx: FigureContext) -> None:
    heads = ctx.heads()
    refs = {}
    if ctx.ran("sadi-head"):
        r = ctx.job.record("sadi-head")
        if r.test is not None:
            refs[f"SADI-head tuned (K={r.setting}, strength {r.strength:g})"] = r.test.accuracy
    ctx.say(f"single-dimension scan of head {heads.label(0)}")
    scan = analysis.single_unit_scan(
        ctx.model,
        heads,
        ctx.test,
        ctx.config.scan_strengths,
        step=4,
        references=refs,
        batch_size=ctx.config.batch_size,
    )
    n = len(ctx.task.test)

    def count(s: float) -> str:
        up = sum(lo > 0 for _, lo, _ in scan.delta[s])
        down = sum(hi < 0 for _, _, hi in scan.delta[s])
        d, lo, hi = scan.block_delta[s]
        return (
            f"strength {s:g}: {up} of {len(scan.dims)} dims resolved above unsteered, {down} "
            f"below; whole head {delta_text(d, lo, hi)}"
        )

    ctx.add(
        "fig7_unit_vs_block",
        figures.unit_vs_block(scan),
        f"Steering single dims of the top SADI head {heads.label(0)} (every 4th of "
        f"{ctx.model.cfg.d_head}) versus the whole head on {n} test items "
        f"({100 * scan.baseline:.1f}% unsteered), as paired differences with 95% intervals. "
        + "; ".join(count(s) for s in scan.strengths)
        + f". Every scanned dimension is shown (none is picked on test); one item is "
        f"{100 / n:.1f} points.",
    )


def fig_unit_writes(ctx: FigureContext) -> None:
    prompt = ctx.task.test[0].prompt
    writes = [
        analysis.unit_writes_data(ctx.model, m.top(1), prompt, strength=ctx.config.writes_strength)
        for m in _au_masks(ctx).values()
    ]
    bits = [
        f"{w.label}'s write direction promotes {', '.join(w.static_tokens[:3])}, and "
        f"scaled by 1+{w.strength:g} its top next token is {w.steered_tokens[0]} "
        f"({100 * w.steered_probs[0]:.1f}%; {100 * w.clean_probs[0]:.1f}% unsteered)"
        for w in writes
    ]
    ctx.add(
        "fig8_unit_writes",
        figures.unit_writes(writes),
        "The top AUSteer attention and FFN units on the first test prompt: "
        + "; ".join(bits)
        + ".",
    )


def fig_methods(ctx: FigureContext) -> None:
    records = ctx.job.records
    base = ctx.job.record(BASELINE).test
    steered = [r for r in records if r.method != BASELINE and r.test is not None]
    if base is None or not steered:
        return
    best = max(steered, key=lambda r: r.test.accuracy if r.test else 0.0)
    assert best.test is not None
    chance = float(np.mean([1 / len(o) for o in ctx.test.options]))
    d, lo, hi = paired_bootstrap_ci(
        str_to_flags(best.test.flags("accuracy")), str_to_flags(base.flags("accuracy"))
    )
    ctx.add(
        "fig9_method_comparison",
        figures.method_comparison(records, task=ctx.task.name, chance=chance),
        f"Test accuracy of every method of the main job ({len(ctx.task.test)} {ctx.task.name} "
        f"test items, settings tuned on {len(ctx.task.dev)} dev items): best {best.method} "
        f"{100 * best.test.accuracy:.1f}% against {100 * base.accuracy:.1f}% unsteered "
        f"(full-vocabulary argmax), a paired difference of {delta_text(d, lo, hi)} points "
        f"({_resolved(lo, hi)}); restricted to the options, unsteered is "
        f"{100 * base.restricted:.1f}%; picking an option at random gives {100 * chance:.1f}%.",
    )


def _resolved(lo: float, hi: float) -> str:
    """How a paired interval reads in a caption."""
    return "its interval excludes 0" if lo > 0 or hi < 0 else "its interval contains 0"


FIGURES = (
    fig_control,
    fig_heads,
    fig_layers,
    fig_overlap,
    fig_sweeps,
    fig_pairs,
    fig_au_scores,
    fig_unit_vs_block,
    fig_unit_writes,
    fig_methods,
)
