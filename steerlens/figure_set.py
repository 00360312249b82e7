"""`steerlens figures`: regenerate the paper-style figure set for one model and task.

`make_figures` loads the model (the embedded SmolLM2 by default) and a task, runs a reduced main
job (`run_job`: every method tuned on dev, scored once on test), collects paired differences at
all sites, and writes each figure of `steerlens.figures` as HTML and PNG into `out_dir`, with a
`README.md` index that shows each PNG with one sentence on what it shows, computed from the data.
The defaults keep the whole set to a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TASK = "sentiment"
BUILTIN_OVERLAP = ("sentiment", "larger", "arithmetic")


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


def _layers_text(layers: Sequence[int]) -> str:
    """Where units sit: every layer for a few units, else the span and the commonest layer."""
    import numpy as np

    arr = np.asarray(layers)
    if arr.size <= 10:
        counts = np.bincount(arr)
        parts = [f"{layer}" + (f" (x{counts[layer]})" if counts[layer] > 1 else "")
                 for layer in sorted(set(arr.tolist()))]  # fmt: skip
        return ("layer " if len(parts) == 1 else "layers ") + ", ".join(parts)
    counts = np.bincount(arr)
    mode = int(counts.argmax())
    return f"layers {int(arr.min())}-{int(arr.max())} ({counts[mode]} in layer {mode})"


def _thirds(layers: Sequence[int], n_layers: int) -> str:
    """Share of units in the early / middle / late third of the model."""
    import numpy as np

    third = np.asarray(layers) * 3 // n_layers
    counts = np.bincount(third, minlength=3)
    return f"{counts[0]} early / {counts[1]} middle / {counts[2]} late"


def make_figures(
    out_dir: str | Path = "figures",
    *,
    task: str = DEFAULT_TASK,
    data_dir: str | None = None,
    model_name: str | None = None,
    overlap_tasks: Sequence[str] | None = None,
    n_train: int = 80,
    n_dev: int = 40,
    n_test: int = 60,
    pair_sizes: Sequence[int] = (10, 20, 40),
    seeds: Sequence[int] = (0, 1, 2),
    scan_strengths: Sequence[float] = (4.0, 16.0, 64.0),
    writes_strength: float = 100.0,
    formats: Sequence[str] = ("png",),
    methods: Sequence[str] | None = None,
    batch_size: int = 32,
    model: Any = None,
    progress: bool = True,
) -> list[FigureEntry]:
    """Write the figure set (HTML + PNG per figure) and `README.md` into `out_dir`.

    Args:
        task: built-in task name, paper benchmark (with `data_dir`) or `.jsonl` path.
        overlap_tasks: tasks compared in the overlap figure (default: the three built-in tasks,
            plus `task`).
        n_train / n_dev / n_test: first rows of each split (pairs for masks, tuning, scoring).
        pair_sizes: subsample sizes for the pairs curve (the full `n_train` is added).
        scan_strengths: strengths of the single-dimension scan.
        writes_strength: strength of the "what a unit writes" steering (`x <- x * (1 + s)`).
        formats: static formats besides HTML ("png", "svg"); () writes HTML only.
        methods: the main job's methods (default: all of `steerlens.run.METHOD_NAMES`).
        model: an already loaded `HookedTransformer` (skips loading).

    Returns:
        The figures written, in order.
    """
    import numpy as np

    import steerlens
    from steerlens import analysis, figures
    from steerlens.run import RunConfig, run_job

    clock = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - clock:5.0f} s] {text}", flush=True)

    if model is None:
        say("loading the model")
        model = steerlens.load_model(model_name)
    cfg = model.cfg

    # -- the main job (method comparison, sweeps) ------------------------------------------------
    say(
        f"main job on {task}: every method tuned on {n_dev} dev items, scored on {n_test} test items"
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(model=model_name, task=task, data_dir=data_dir, n_train=n_train,
                           n_dev=n_dev, n_test=n_test, batch_size=batch_size, out=tmp,
                           **({"methods": tuple(methods)} if methods else {}))  # fmt: skip
        job = run_job(config, model=model)
        for name in ("results.md", "results.csv"):
            shutil.copyfile(Path(tmp) / name, out / f"main_job_{name}")
    rows = {r.method: r for r in job["rows"]}
    base_row = rows["none"]

    t = steerlens.load_task(task, data_dir=data_dir, tokenizer=model.tokenizer)
    t = t.with_limits(train=n_train, dev=n_dev, test=n_test)
    say(f"collecting differences on {len(t.train)} {t.name} pairs at all sites")
    diffs = steerlens.collect_differences(
        model, t.train, site=["head", "neuron", "mlp_out", "resid"], keep_pairs=True,
        batch_size=max(1, batch_size // 2), task=t.name, progress=progress,
    )  # fmt: skip
    test = steerlens.encode_items(model, t.test)
    entries: list[FigureEntry] = []

    def add(name: str, fig: Any, caption: str) -> None:
        paths = figures.save_figure(fig, out / name, formats=formats)
        entries.append(FigureEntry(name, fig.layout.title.text, caption, paths))
        say(f"wrote {name}")

    with figures.png_export():
        # -- 1. heads ------------------------------------------------------------------------------
        k_heads = min(8, cfg.n_layers * cfg.n_heads)
        heads = steerlens.sadi_mask(diffs["head"], k_heads)
        top = heads.label(0)
        add("fig1_head_heatmap", figures.head_heatmap(diffs["head"], heads),
            f"Signed mean difference of every head's output (hook_z averaged over d_head) on "
            f"{t.name}; the top-{k_heads} SADI heads sit in {_layers_text(heads.layers.tolist())}, "
            f"the best is {top} ({float(heads.scores[0]):.3g}).")  # fmt: skip

        # -- 2. top-100 distribution --------------------------------------------------------------
        k_units = min(100, cfg.n_layers * cfg.d_model)
        dist = {
            "neurons (mlp.hook_post)": steerlens.sadi_mask(diffs["neuron"], k_units),
            "hidden dims (hook_mlp_out)": steerlens.sadi_mask(diffs["mlp_out"], k_units),
            "residual dims (hook_resid_post)": steerlens.sadi_mask(diffs["resid"], k_units),
        }
        parts = [f"{label.split(' (')[0]} in {_layers_text(m.layers.tolist())}, "
                 f"{_thirds(m.layers.tolist(), cfg.n_layers)}" for label, m in dist.items()]  # fmt: skip
        add("fig2_top100_layers", figures.layer_distribution(dist),
            f"Layers of the top-{k_units} units by SADI's signed mean difference: "
            + "; ".join(parts) + ".")  # fmt: skip

        # -- 3. cross-task overlap ----------------------------------------------------------------
        names = list(overlap_tasks) if overlap_tasks else list(BUILTIN_OVERLAP)
        if t.name not in names and task not in names:
            names.insert(0, task)
        per_task = {}
        for name in names:
            if name in (task, t.name):
                per_task[t.name] = {"head": diffs["head"], "mlp_out": diffs["mlp_out"]}
                continue
            say(f"collecting differences on {name} for the overlap figure")
            other = steerlens.load_task(name, data_dir=data_dir, tokenizer=model.tokenizer)
            other = other.with_limits(train=n_train)
            per_task[other.name] = steerlens.collect_differences(
                model, other.train, site=["head", "mlp_out"], batch_size=max(1, batch_size // 2),
                task=other.name, progress=progress,
            )  # fmt: skip
        k_au = min(100, cfg.n_layers * cfg.d_model, cfg.n_layers * cfg.n_heads * cfg.d_head)
        families = {
            f"SADI heads (K={k_heads})": {n: steerlens.sadi_mask(d["head"], k_heads) for n, d in per_task.items()},
            f"AUSteer attention AUs (k={k_au})": {n: steerlens.austeer_mask(d["head"], k_au) for n, d in per_task.items()},
            f"AUSteer FFN AUs (k={k_au})": {n: steerlens.austeer_mask(d["mlp_out"], k_au) for n, d in per_task.items()},
        }  # fmt: skip
        summary = []
        for fam, masks in families.items():
            _, shared, jac = figures.overlap_counts(masks)
            off = ~np.eye(len(masks), dtype=bool)
            summary.append(f"{fam.split(' (')[0]} share {int(shared[off].min())}-{int(shared[off].max())} "
                           f"units (Jaccard up to {jac[off].max():.2f})")  # fmt: skip
        add("fig3_cross_task_overlap", figures.overlap_matrix(families),
            f"Units selected on {', '.join(per_task)} ({n_train} pairs each), compared pairwise: "
            + "; ".join(summary) + ".")  # fmt: skip

        # -- 4. accuracy over K and strength ----------------------------------------------------
        for method, letter in (("sadi-head", "a"), ("austeer-attention", "b")):
            if method not in rows or rows[method].sweep is None:
                continue
            sw = rows[method].sweep
            setting, strength, score = sw.best
            base = sw.baseline.accuracy
            add(f"fig4{letter}_{method}_sweep", figures.sweep_heatmap(sw, label=method),
                f"Dev accuracy of {method} over the main job's grid ({n_dev} dev items): best "
                f"K={setting} at strength {strength:g} with {100 * score:.1f}% against "
                f"{100 * base:.1f}% unsteered; the grid spans {100 * sw.accuracy.min():.1f}-"
                f"{100 * sw.accuracy.max():.1f}%.")  # fmt: skip

        # -- 5. accuracy versus number of pairs -----------------------------------------------
        curve_methods = {}
        for method, site, build in (
            ("sadi-head", "head", steerlens.sadi_mask),
            ("sadi-neuron", "neuron", steerlens.sadi_mask),
            ("austeer-attention", "head", steerlens.austeer_mask),
        ):
            if method in rows:
                r = rows[method]
                k = int(r.setting)
                curve_methods[f"{method} (K={k}, strength {r.strength:g})"] = (
                    site, lambda d, k=k, build=build: build(d, k), float(r.strength),
                )  # fmt: skip
        if curve_methods:
            sizes = sorted({*pair_sizes, len(t.train)})
            say(
                f"pairs curve: {len(curve_methods)} methods x sizes {sizes} x {len(seeds)} seeds on test"
            )
            records = analysis.pairs_curve_data(model, diffs, test, curve_methods, sizes=sizes, seeds=seeds,
                                                batch_size=batch_size)  # fmt: skip
            curve = figures.pairs_summary(records)
            bits = [f"{m.split(' (')[0]} {100 * s['mean'][0]:.1f}% at {s['n'][0]} pairs vs "
                    f"{100 * s['mean'][-1]:.1f}% at {s['n'][-1]}" for m, s in curve.items()]  # fmt: skip
            add("fig5_pairs_curve", figures.pairs_curve(records),
                f"Test accuracy ({len(t.test)} items) when each method's mask (at its tuned K and "
                f"strength) is built from fewer pairs: " + "; ".join(bits)
                + f" (unsteered {100 * base_row.test.accuracy:.1f}%).")  # fmt: skip

        # -- 6. AU score map --------------------------------------------------------------------
        au_masks = {
            "attention (hook_z, flattened)": steerlens.austeer_mask(diffs["head"], k_au),
            "FFN (hook_mlp_out)": steerlens.austeer_mask(diffs["mlp_out"], k_au),
        }
        panels = {
            "attention (hook_z, flattened)": diffs["head"],
            "FFN (hook_mlp_out)": diffs["mlp_out"],
        }
        bits = []
        for label, m in au_masks.items():
            neg = int((m.weights < 0).sum())
            bits.append(f"{label.split(' (')[0]}: top-{k_au} s from {float(m.scores[-1]):.2f} to "
                        f"{float(m.scores[0]):.2f}, in {_layers_text(m.layers.tolist())}, {neg} "
                        "suppressive")  # fmt: skip
        add("fig6_au_score_map", figures.au_score_map(panels, masks=au_masks),
            "AUSteer's sign-consistency score s of every atomic unit (crosses: the top-"
            f"{k_au}); " + "; ".join(bits) + ".")  # fmt: skip

        # -- 7. single unit versus block --------------------------------------------------------
        refs = {}
        if "sadi-head" in rows:
            r = rows["sadi-head"]
            refs[f"SADI-head tuned (K={r.setting}, strength {r.strength:g})"] = r.test.accuracy
        say(f"single-dimension scan of head {heads.label(0)}")
        scan = analysis.single_unit_scan(model, heads, test, scan_strengths, step=4,
                                         references=refs, batch_size=batch_size)  # fmt: skip
        best_s = max(scan.strengths, key=lambda s: max(scan.accuracy[s]))
        best_i = max(range(len(scan.dims)), key=lambda i: scan.accuracy[best_s][i])
        beat = {s: sum(a > scan.block[s] for a in scan.accuracy[s]) for s in scan.strengths}
        add("fig7_unit_vs_block", figures.unit_vs_block(scan),
            f"Steering single dims of the top SADI head {heads.label(0)} (every 4th of "
            f"{cfg.d_head}) versus the whole head on {len(t.test)} test items: the best single dim "
            f"(d={scan.dims[best_i]}, strength {best_s:g}) reaches "
            f"{100 * scan.accuracy[best_s][best_i]:.1f}% against {100 * scan.block[best_s]:.1f}% "
            f"for the whole head and {100 * scan.baseline:.1f}% unsteered; "
            + ", ".join(f"{beat[s]} of {len(scan.dims)} dims beat the head at strength {s:g}"
                        for s in scan.strengths) + ".")  # fmt: skip

        # -- 8. what a unit writes ---------------------------------------------------------------
        prompt = t.test[0].prompt
        writes = [analysis.unit_writes_data(model, m.top(1), prompt, strength=writes_strength)
                  for m in au_masks.values()]  # fmt: skip
        bits = [f"{w.label}'s write direction promotes {', '.join(w.static_tokens[:3])}, and "
                f"scaled by 1+{w.strength:g} its top next token is {w.steered_tokens[0]} "
                f"({100 * w.steered_probs[0]:.1f}%; {100 * w.clean_probs[0]:.1f}% unsteered)"
                for w in writes]  # fmt: skip
        add(
            "fig8_unit_writes",
            figures.unit_writes(writes),
            "The top AUSteer attention and FFN units on the first test prompt: "
            + "; ".join(bits)
            + ".",
        )

        # -- method comparison -----------------------------------------------------------------
        ranked = sorted(
            (r for r in job["rows"] if r.method != "none"), key=lambda r: -r.test.accuracy
        )
        best = ranked[0]
        add("fig9_method_comparison", figures.method_comparison(job["rows"], task=t.name),
            f"Test accuracy of every method of the main job ({len(t.test)} {t.name} test items, "
            f"settings tuned on {len(t.dev)} dev items): best {best.method} "
            f"{100 * best.test.accuracy:.1f}% against {100 * base_row.test.accuracy:.1f}% "
            f"unsteered (full-vocabulary argmax); restricted to the options, unsteered is "
            f"{100 * base_row.test.restricted:.1f}%.")  # fmt: skip

    seconds = time.perf_counter() - clock
    write_index(out, entries, model_name=str(cfg.model_name), task=t, seconds=seconds,
                sizes=(len(t.train), len(t.dev), len(t.test)))  # fmt: skip
    say(f"wrote {out / 'README.md'} ({len(entries)} figures, {seconds:.0f} s)")
    return entries


def write_index(
    out: Path,
    entries: Sequence[FigureEntry],
    *,
    model_name: str,
    task: Any,
    seconds: float,
    sizes: tuple[int, int, int],
) -> Path:
    """`README.md` listing each figure (PNG if written, else a link to its HTML) with its caption."""
    lines = [
        f"# steerlens figures: {task.name} on {model_name}",
        "",
        f"Regenerate with `steerlens figures` (`python -m steerlens.cli figures`); this set took "
        f"{seconds / 60:.1f} min on CPU. Task `{task.name}` ({task.style} prompts, {task.n_shot}-shot): "
        f"{sizes[0]} contrastive pairs, {sizes[1]} dev items (tuning), {sizes[2]} test items. "
        "Accuracy is the papers' metric (the full-vocabulary argmax is the answer's first token) "
        "unless a figure says otherwise. Each figure also has an interactive `.html` version "
        "(hover for values); the main job's table is in `main_job_results.md`.",
        "",
    ]
    for e in entries:
        png = next((p for p in e.paths if p.suffix == ".png"), None)
        html = next((p for p in e.paths if p.suffix == ".html"), None)
        lines.append(f"## Figure {e.number}. {e.title}")
        lines.append("")
        if png is not None:
            lines.append(f"![{e.name}]({png.name})")
            lines.append("")
        lines.append(e.caption + (f" ([interactive]({html.name}))" if html is not None else ""))
        lines.append("")
    others = sorted(p.parent.name for p in out.glob("*/README.md"))
    if others:
        lines += ["## Other tasks", ""]
        lines += [f"- [{name}]({name}/README.md)" for name in others]
        lines.append("")
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `steerlens figures`."""
    p = sub.add_parser(
        "figures", help="regenerate the paper-style figure set (HTML + PNG) and its index"
    )
    p.add_argument("--out", default="figures",
                   help="output directory; a task other than the first goes to OUT/<task>")  # fmt: skip
    p.add_argument("--task", nargs="+", default=None,
                   help=f"built-in tasks, paper benchmarks or .jsonl paths (default: {DEFAULT_TASK}, "
                   "plus every paper benchmark when --data-dir is given)")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="benchmark data directory (paper tasks)")
    p.add_argument(
        "--model", default=None, help="model name or local HF directory (default: embedded)"
    )
    p.add_argument("--overlap-tasks", nargs="+", default=None,
                   help="tasks compared in the overlap figure (default: the built-in tasks)")  # fmt: skip
    p.add_argument("--n-train", type=int, default=80, help="contrastive pairs")
    p.add_argument("--n-dev", type=int, default=40, help="dev items (tuning)")
    p.add_argument("--n-test", type=int, default=60, help="test items")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="pair-subsample seeds")
    p.add_argument("--formats", nargs="*", default=["png"], choices=["png", "svg"],
                   help="static formats besides HTML (none: HTML only)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """Run `steerlens figures` from parsed arguments: one set per task, the model loaded once."""
    import steerlens
    from steerlens.paper_tasks import PAPER_TASKS

    tasks = args.task or ([DEFAULT_TASK, *PAPER_TASKS] if args.data_dir else [DEFAULT_TASK])
    model = steerlens.load_model(args.model)
    root = Path(args.out)
    # the first task's set goes to OUT and links the others, so write the others first
    for i, task in reversed(list(enumerate(tasks))):
        out = root if i == 0 else root / Path(task).stem
        entries = make_figures(
            out, task=task, data_dir=args.data_dir, model_name=args.model, model=model,
            overlap_tasks=args.overlap_tasks, n_train=args.n_train, n_dev=args.n_dev,
            n_test=args.n_test, seeds=tuple(args.seeds), formats=tuple(args.formats),
        )  # fmt: skip
        for e in entries:
            print(f"{out}/{e.name}: {', '.join(p.suffix[1:] for p in e.paths)}")
    return 0


COMMAND = (add_parser, main)
