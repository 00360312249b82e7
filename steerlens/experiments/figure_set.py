"""`steerlens figures`: the paper-style figure set for one model and task, with an index.

`make_figures` loads the model (the embedded SmolLM2 by default) and a task, collects paired
differences at every site once (with per-pair values, for the pairs curve), runs a reduced main
job on them (every method tuned on dev with `steerlens.tune`, scored once on test), and writes
each figure as HTML and PNG into `out_dir` with a `README.md` index whose captions are computed
from the data. One function per figure (`paper_figures`); the defaults keep the set to a few minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .. import figures
from .._backend import HookedTransformer
from ..evaluate import encode_items
from ..models import load_model
from ..tasks import PAPER_TASKS, Task
from ._shared import task_differences
from .main_job import CONTROLS, RunConfig, default_shots, prepare_task, run_job
from .paper_figures import (
    DEFAULT_TASK,
    FIGURES,
    FigureContext,
    FigureEntry,
    FiguresConfig,
)


def make_figures(
    out_dir: str | Path = "figures",
    config: FiguresConfig | None = None,
    *,
    model: HookedTransformer | None = None,
    progress: bool = True,
) -> list[FigureEntry]:
    """Write the figure set (HTML + PNG per figure) and `README.md` into `out_dir`."""
    config = config or FiguresConfig()
    clock = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - clock:5.0f} s] {text}", flush=True)

    if model is None:
        say("loading the model")
        model = load_model(config.model_name)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunConfig(
            model=config.model_name,
            task=config.task,
            data_dir=config.data_dir,
            n_shot=default_shots(config.task) if config.n_shot is None else config.n_shot,
            n_train=config.n_train,
            n_dev=config.n_dev,
            n_test=config.n_test,
            batch_size=config.batch_size,
            out=tmp,
            methods=tuple(config.methods) if config.methods else RunConfig.methods + CONTROLS,
        )
        task = prepare_task(run, model)
        say(f"collecting differences on {len(task.train)} {task.name} pairs at four sites")
        diffs = task_differences(
            model,
            task,
            ("head", "neuron", "mlp_out", "resid"),
            batch_size=config.batch_size,
            keep_pairs=True,
            progress=progress,
        )
        say(f"main job on {task.name}: every method tuned on {len(task.dev)} dev items")
        job = run_job(run, model=model, diffs=diffs, progress=progress)
        for name in ("results.md", "results.csv"):
            shutil.copyfile(Path(tmp) / name, out / f"main_job_{name}")
    ctx = FigureContext(
        model, config, task, diffs, encode_items(model, task.test), job, run, out, say
    )
    with figures.png_export():
        for figure in FIGURES:
            figure(ctx)
    seconds = time.perf_counter() - clock
    write_index(out, ctx.entries, model_name=str(model.cfg.model_name), task=task, seconds=seconds)
    say(f"wrote {out / 'README.md'} ({len(ctx.entries)} figures, {seconds:.0f} s)")
    return ctx.entries


def make_figure_sets(
    root: str | Path, tasks: Sequence[str] | None, config: FiguresConfig
) -> dict[Path, list[FigureEntry]]:
    """One figure set per task, the model loaded once: the first task's set goes to `root` and
    links the others (in `root/<task>`), so the others are written first."""
    tasks = list(tasks or ([DEFAULT_TASK, *PAPER_TASKS] if config.data_dir else [DEFAULT_TASK]))
    model = load_model(config.model_name)
    sets = {}
    for i, task in reversed(list(enumerate(tasks))):
        out = Path(root) if i == 0 else Path(root) / Path(task).stem
        sets[out] = make_figures(out, _replace_task(config, task), model=model)
    return sets


def _replace_task(config: FiguresConfig, task: str) -> FiguresConfig:
    return dataclasses.replace(config, task=task)


def write_index(
    out: Path, entries: Sequence[FigureEntry], *, model_name: str, task: Task, seconds: float
) -> Path:
    """`README.md` listing each figure (PNG if written, else a link to its HTML) with its caption."""
    lines = [
        f"# steerlens figures: {task.name} on {model_name}",
        "",
        f"Regenerate with `steerlens figures`; this set took {seconds / 60:.1f} min on CPU. Task "
        f"`{task.name}` ({task.style} prompts, {task.n_shot}-shot): {len(task.train)} contrastive "
        f"pairs, {len(task.dev)} dev items (tuning), {len(task.test)} test items. Accuracy is the "
        "exact-token accuracy (the full-vocabulary argmax is the answer's first token) unless a figure "
        "says otherwise. Each figure also has an interactive `.html` version (hover for values); "
        "the main job's table is in `main_job_results.md`.",
        "",
    ]
    for e in entries:
        png = next((p for p in e.paths if p.suffix == ".png"), None)
        html = next((p for p in e.paths if p.suffix == ".html"), None)
        lines += [f"## Figure {e.number}. {e.title}", ""]
        if png is not None:
            lines += [f"![{e.name}]({png.name})", ""]
        lines += [e.caption + (f" ([interactive]({html.name}))" if html is not None else ""), ""]
    ablations = sorted(out.glob("ablation-*.png")) or sorted(out.glob("ablation-*.html"))
    if ablations:
        lines += [
            "## Ablations",
            "",
            "Written by `steerlens ablations` into this directory (commands, sizes and readings: "
            '`docs/results.md`, "Ablations"); each shows the paired difference to the unsteered '
            "model with its 95% interval where its rows carry one.",
            "",
        ]
        for path in ablations:
            lines += [
                f"![{path.stem}]({path.name})"
                if path.suffix == ".png"
                else f"- [{path.stem}]({path.name})",
                "",
            ]
    others = sorted(p.parent.name for p in out.glob("*/README.md"))
    if others:
        lines += ["## Other tasks", "", *[f"- [{name}]({name}/README.md)" for name in others], ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path
