"""Command line: `steerlens run | reproduce | ablations | figures`.

All argument parsing lives here. Each subcommand builds its driver's config dataclass from the
arguments, with the defaults read from that dataclass, so a default is written once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .evaluate import METRICS
from .experiments import (
    AblationConfig,
    FiguresConfig,
    ReproduceConfig,
    RunConfig,
    make_figure_sets,
    quick_config,
    run_ablations,
    run_job,
    run_reproduction,
)
from .experiments.ablations import ABLATIONS
from .experiments.estimate import estimate, estimate_table
from .experiments.reproduce import ALL_METHODS, model_label
from .methods import METHOD_NAMES
from .tasks import PAPER_TASKS

Subparsers = Any  # argparse's _SubParsersAction is private
_UNSET: Any = object()  # "not given on the command line": keep the config's default


def _limit(text: str) -> int | None:
    """A split size: a positive int, or "all" (None: the whole split)."""
    return None if text.lower() in ("all", "none") else int(text)


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The arguments the user gave (not `_UNSET`), as config fields."""
    return {n: getattr(args, n) for n in names if getattr(args, n, _UNSET) is not _UNSET}


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


# ---- run ------------------------------------------------------------------------------------


def _run_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run", help="all methods on one task: tune on dev, score test, write a table"
    )
    d = RunConfig()
    p.add_argument(
        "--model",
        default=None,
        help="TransformerLens name or local HF directory (default: embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--task",
        default=d.task,
        help="built-in name (sentiment, larger, arithmetic), "
        f"paper benchmark ({', '.join(PAPER_TASKS)}) or a .jsonl path",
    )
    p.add_argument("--data-dir", default=None, help="benchmark data directory (or $STEERLENS_DATA)")
    p.add_argument("--style", default=d.style, choices=["raw", "chat"], help="prompt format")
    p.add_argument("--n-shot", type=int, default=d.n_shot, help="train demonstrations per prompt")
    p.add_argument("--n-train", type=_limit, default=d.n_train, help="contrastive pairs ('all')")
    p.add_argument("--n-dev", type=_limit, default=d.n_dev, help="dev items for tuning ('all')")
    p.add_argument("--n-test", type=_limit, default=d.n_test, help="test items ('all')")
    p.add_argument("--methods", nargs="+", default=list(d.methods), choices=METHOD_NAMES)
    p.add_argument(
        "--metric",
        default=d.metric,
        choices=list(METRICS),
        help="dev metric that picks K and strength",
    )
    p.add_argument(
        "--answer-space",
        default=d.answer_space,
        choices=["keep", "auto"],
        help="auto: spell each answer as it continues its prompt (' A' after "
        "'Answer:'), for files whose answers lack the model's whitespace",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--out", default=d.out, help="output directory")


def _run_main(args: argparse.Namespace) -> int:
    config = RunConfig(
        model=args.model,
        task=args.task,
        data_dir=args.data_dir,
        style=args.style,
        n_shot=args.n_shot,
        n_train=args.n_train,
        n_dev=args.n_dev,
        n_test=args.n_test,
        methods=tuple(args.methods),
        metric=args.metric,
        answer_space=args.answer_space,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        out=args.out,
    )
    start = time.perf_counter()
    result = run_job(config)
    print(result.table)
    print(
        f"\nwrote {result.out}/results.md and results.csv "
        f"({time.perf_counter() - start:.0f} s in all)"
    )
    return 0


# ---- reproduce ------------------------------------------------------------------------------


def _reproduce_parser(sub: Subparsers) -> None:
    d = ReproduceConfig()
    p = sub.add_parser(
        "reproduce",
        help="all methods on the papers' benchmarks: tune on dev, score test once, resumable",
    )
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data_dir",
        default=_UNSET,
        help="benchmark directory (default: $STEERLENS_DATA or ../shared/data)",
    )
    p.add_argument("--models", nargs="+", default=_UNSET, help="model names (default: embedded)")
    p.add_argument("--tasks", nargs="+", default=_UNSET, choices=PAPER_TASKS)
    p.add_argument(
        "--shots",
        nargs="+",
        type=int,
        default=_UNSET,
        help=f"prompt formats as numbers of demonstrations (default {list(d.shots)})",
    )
    p.add_argument("--style", default=_UNSET, choices=["raw", "chat"])
    p.add_argument(
        "--n-train", type=_limit, default=_UNSET, help=f"pairs or 'all' (default {d.n_train})"
    )
    p.add_argument("--n-dev", type=_limit, default=_UNSET, help=f"dev items (default {d.n_dev})")
    p.add_argument("--n-test", type=_limit, default=_UNSET, help=f"test items (default {d.n_test})")
    p.add_argument("--methods", nargs="+", default=_UNSET, choices=ALL_METHODS)
    p.add_argument(
        "--grid",
        dest="grid_overrides",
        action="append",
        default=[],
        metavar="METHOD=SETTINGS:STRENGTHS",
        help="override a method's grid, e.g. sadi-head=1,2,4:0.5,1,2 (repeatable); "
        "METHOD=run uses the main job's grid",
    )
    p.add_argument(
        "--metric",
        default=_UNSET,
        choices=list(METRICS),
        help="dev metric that picks K and strength (default accuracy)",
    )
    p.add_argument("--batch-size", type=int, default=_UNSET)
    p.add_argument("--seed", type=int, default=_UNSET)
    p.add_argument("--device", default=_UNSET)
    p.add_argument("--out", default=_UNSET, help=f"output directory (default {d.out})")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI size: sst2+copa, 0-shot, 24 pairs, 16 dev, 24 test, 2 methods + none",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="measure one evaluation per task and print the predicted run time",
    )
    p.add_argument(
        "--estimate-cpu",
        action="store_true",
        help="with --estimate: time by process CPU time (busy machine, --threads 1)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")


def parse_grid(text: str) -> tuple[str, tuple[tuple[int, ...] | None, tuple[float, ...]] | None]:
    """``"sadi-head=1,2,4:0.5,1"`` -> ``("sadi-head", ((1, 2, 4), (0.5, 1.0)))``; ``"caa=run"`` ->
    ``("caa", None)`` (the main job's grid)."""
    name, sep, rest = text.partition("=")
    if not sep or name not in METHOD_NAMES:
        raise ValueError(
            f"--grid {text!r}: give METHOD=SETTINGS:STRENGTHS with METHOD in {METHOD_NAMES}"
        )
    if rest == "run":
        return name, None
    settings, sep, strengths = rest.partition(":")
    try:
        parsed = (
            tuple(int(x) for x in settings.split(",")),
            tuple(float(x) for x in strengths.split(",")),
        )
    except ValueError:
        raise ValueError(
            f"--grid {text!r}: settings are ints, strengths numbers, e.g. 1,2,4:0.5,1"
        ) from None
    if not sep or not parsed[0] or not parsed[1]:
        raise ValueError(f"--grid {text!r}: give METHOD=SETTINGS:STRENGTHS")
    return name, parsed


def reproduce_config(args: argparse.Namespace) -> ReproduceConfig:
    """The `ReproduceConfig` of parsed `steerlens reproduce` arguments."""
    config = quick_config() if args.quick else ReproduceConfig()
    changes = _given(
        args,
        [
            "data_dir",
            "style",
            "metric",
            "batch_size",
            "seed",
            "device",
            "out",
            "n_train",
            "n_dev",
            "n_test",
        ],
    )
    for name in ("models", "tasks", "shots", "methods"):
        if getattr(args, name) is not _UNSET:
            changes[name] = tuple(getattr(args, name))
    if args.grid_overrides:
        from .methods import get_method

        grids = dict(config.grids)
        for text in args.grid_overrides:
            name, spec = parse_grid(text)
            method = get_method(name)
            grids[name] = spec if spec is not None else (method.settings or None, method.strengths)
        changes["grids"] = grids
    return dataclasses.replace(config, **changes)


def _reproduce_main(args: argparse.Namespace) -> int:
    config = reproduce_config(args)
    _threads(args.threads)
    if args.estimate:
        from .models import load_model

        for name in config.models:
            model = load_model(name, device=config.device)
            print(f"{model_label(name)}:")
            print(estimate_table(estimate(config, model, use_cpu_time=args.estimate_cpu)))
        return 0
    result = run_reproduction(config, progress=not args.no_progress)
    print(
        f"{len(result.computed)} cells computed, {len(result.reused)} reused; wrote "
        f"{result.out}/results.md and results.csv ({result.seconds:.0f} s wall, "
        f"{result.cpu_seconds:.0f} s CPU)"
    )
    return 0


# ---- ablations ------------------------------------------------------------------------------


def _ablations_parser(sub: Subparsers) -> None:
    d = AblationConfig()
    p = sub.add_parser(
        "ablations",
        help="steer-less curve, promotion/suppression, adaptive/fixed, "
        "pairs curve on one task, with figures",
    )
    p.add_argument("--data", "--data-dir", dest="data_dir", default=None)
    p.add_argument("--model", default=None, help="model name (default: embedded SmolLM2-135M)")
    p.add_argument("--task", default="sst2")
    p.add_argument("--n-shot", type=int, default=4)
    p.add_argument("--n-train", type=int, default=150)
    p.add_argument("--n-dev", type=int, default=100)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--site", default=d.site, choices=["head", "mlp_out"])
    p.add_argument("--which", nargs="+", default=list(d.which), choices=ABLATIONS)
    p.add_argument(
        "--ks",
        nargs="+",
        type=int,
        default=list(d.ks),
        help="numbers of steered units for the steer-less curve",
    )
    p.add_argument(
        "--strengths",
        nargs="+",
        type=float,
        default=list(d.strengths),
        help="AUSteer alphas tried on dev",
    )
    p.add_argument(
        "--fractions",
        nargs="+",
        type=float,
        default=list(d.fractions),
        help="suppression: fractions of units suppressed",
    )
    p.add_argument(
        "--factors",
        nargs="+",
        type=float,
        default=list(d.factors),
        help="suppression: factors the suppressed units are scaled by",
    )
    p.add_argument("--n-pairs", nargs="+", type=int, default=list(d.n_pairs))
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/ablations")
    p.add_argument("--figures", default="figures", help="where the figures go")
    p.add_argument("--quick", action="store_true", help="tiny grids (CI)")
    p.add_argument("--device", default=None)


def _ablations_main(args: argparse.Namespace) -> int:
    from .models import load_model
    from .tasks import load_task

    config = AblationConfig(
        which=tuple(args.which),
        site=args.site,
        ks=tuple(args.ks),
        strengths=tuple(args.strengths),
        n_pairs=tuple(args.n_pairs),
        fractions=tuple(args.fractions),
        factors=tuple(args.factors),
        batch_size=args.batch_size,
        quick=args.quick,
    )
    _threads(args.threads)
    model = load_model(args.model, device=args.device)
    task = load_task(
        args.task, data_dir=args.data_dir, n_shot=args.n_shot, tokenizer=model.tokenizer
    )
    task = task.with_limits(train=args.n_train, dev=args.n_dev, test=args.n_test)
    start = time.perf_counter()
    results = run_ablations(model, task, args.out, config, figures_dir=args.figures)
    for name, res in results.items():
        print(f"  {name}: {res['seconds']:.0f} s -> {', '.join(res['figures'])}")
    print(f"ablations done in {time.perf_counter() - start:.0f} s; data in {args.out}")
    return 0


# ---- figures --------------------------------------------------------------------------------


def _figures_parser(sub: Subparsers) -> None:
    d = FiguresConfig()
    p = sub.add_parser("figures", help="regenerate the paper-style figure set and its index")
    p.add_argument(
        "--out", default="figures", help="output directory; other tasks go to OUT/<task>"
    )
    p.add_argument(
        "--task",
        nargs="+",
        default=None,
        help="built-in tasks, paper benchmarks or "
        f".jsonl paths (default: {d.task}, plus every benchmark with --data-dir)",
    )
    p.add_argument("--data-dir", default=None, help="benchmark data directory (paper tasks)")
    p.add_argument("--model", default=None, help="model name or local HF directory")
    p.add_argument(
        "--overlap-tasks",
        nargs="+",
        default=None,
        help="tasks compared in the overlap figure (default: the built-in tasks)",
    )
    p.add_argument("--n-train", type=int, default=d.n_train, help="contrastive pairs")
    p.add_argument("--n-dev", type=int, default=d.n_dev, help="dev items (tuning)")
    p.add_argument("--n-test", type=int, default=d.n_test, help="test items")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=list(d.seeds), help="pair-subsample seeds"
    )
    p.add_argument(
        "--formats",
        nargs="*",
        default=list(d.formats),
        choices=["png", "svg"],
        help="static formats besides HTML (none: HTML only)",
    )


def _figures_main(args: argparse.Namespace) -> int:
    config = FiguresConfig(
        data_dir=args.data_dir,
        model_name=args.model,
        overlap_tasks=tuple(args.overlap_tasks) if args.overlap_tasks else None,
        n_train=args.n_train,
        n_dev=args.n_dev,
        n_test=args.n_test,
        seeds=tuple(args.seeds),
        formats=tuple(args.formats),
    )
    for out, entries in make_figure_sets(args.out, args.task, config).items():
        for e in entries:
            print(f"{out}/{e.name}: {', '.join(p.suffix[1:] for p in e.paths)}")
    return 0


Command = tuple[Callable[[Subparsers], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "run": (_run_parser, _run_main),
    "reproduce": (_reproduce_parser, _reproduce_main),
    "ablations": (_ablations_parser, _ablations_main),
    "figures": (_figures_parser, _figures_main),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerlens", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `steerlens` console script; user errors exit 2 with one line."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"steerlens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
