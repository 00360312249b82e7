"""`steerlens reproduce`: the papers' benchmarks, every method, resumable."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..evaluate import METRICS
from ..experiments import (
    ReproduceConfig,
    ReproduceResult,
    quick_config,
    run_reproduction,
)
from ..experiments.cells import ALL_METHODS, model_label, released_config
from ..experiments.estimate import estimate, estimate_table
from ..experiments.mc_job import is_mc_name
from ..experiments.reproduce import assemble
from ..experiments.shards import parse_shard
from ..methods import METHOD_NAMES
from ..tasks import BENCHMARK_TASKS, DEMO_MODES, PAPER_TASKS, normalize_name
from ..tasks.benchmarks import MMLU_PREFIX, RELEASED_SUFFIX
from ..tasks.mmlu import check_subjects
from ._common import UNSET, Subparsers, given, set_threads, split_size


def benchmark_task(name: str) -> str:
    """A `--tasks` entry: a paper task or a further benchmark (MMLU, ``mmlu:<subject>[,...]``,
    either with ``+released``; XNLI; XCOPA). TruthfulQA is scored by MC1/MC2 in `steerlens run`."""
    if is_mc_name(name):
        raise argparse.ArgumentTypeError(
            f"{name} is scored by MC1/MC2 over whole answers: run it with "
            "`steerlens run --task truthfulqa`"
        )
    if normalize_name(name) in PAPER_TASKS:
        return normalize_name(name)
    key = name.lower()
    base = key.removesuffix(RELEASED_SUFFIX)
    if base in BENCHMARK_TASKS and (base == "mmlu" or key == base):
        return key
    if base.startswith(MMLU_PREFIX):
        try:
            check_subjects(base.removeprefix(MMLU_PREFIX).split(","))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return key
    valid = [*PAPER_TASKS, *(t for t in BENCHMARK_TASKS if not is_mc_name(t))]
    raise argparse.ArgumentTypeError(
        f"unknown task {name!r}; use one of {', '.join(valid)}, mmlu:<subject>[,<subject>] "
        f"(MMLU names may end in {RELEASED_SUFFIX!r})"
    )


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
        default=UNSET,
        help="benchmark directory (default: $STEERLENS_DATA or ../shared/data)",
    )
    p.add_argument("--models", nargs="+", default=UNSET, help="model names (default: embedded)")
    p.add_argument(
        "--tasks",
        nargs="+",
        type=benchmark_task,
        default=UNSET,
        metavar="TASK",
        help=f"default: {' '.join(PAPER_TASKS)}; also "
        f"{', '.join(t for t in BENCHMARK_TASKS if not is_mc_name(t))}, "
        "mmlu:<subject>[,<subject>], MMLU names with +released (SADI's rows)",
    )
    p.add_argument(
        "--shots",
        nargs="+",
        type=int,
        default=UNSET,
        help=f"prompt formats as numbers of demonstrations (default {list(d.shots)})",
    )
    p.add_argument("--style", default=UNSET, choices=["raw", "chat"])
    p.add_argument(
        "--demos",
        default=UNSET,
        choices=DEMO_MODES,
        help="k-shot: one demonstration set before every prompt (shared, default; --seed picks "
        "it) or a draw per prompt",
    )
    p.add_argument(
        "--n-train", type=split_size, default=UNSET, help=f"pairs or 'all' (default {d.n_train})"
    )
    p.add_argument("--n-dev", type=split_size, default=UNSET, help=f"dev items (default {d.n_dev})")
    p.add_argument(
        "--n-test", type=split_size, default=UNSET, help=f"test items (default {d.n_test})"
    )
    p.add_argument("--methods", nargs="+", default=UNSET, choices=ALL_METHODS)
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
        default=UNSET,
        choices=list(METRICS),
        help="dev metric that picks K and strength (default accuracy)",
    )
    p.add_argument("--batch-size", type=int, default=UNSET)
    p.add_argument("--seed", type=int, default=UNSET)
    p.add_argument("--device", default=UNSET)
    p.add_argument("--out", default=UNSET, help=f"output directory (default {d.out})")
    p.add_argument(
        "--released",
        action="store_true",
        help="each method as its authors' released code runs it (SADI's clamp and texts, "
        "AUSteer's texts and grid, ITI's probes, CAA's positions), every train pair, "
        "dev choice by the papers' string metric",
    )
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
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (per worker with --workers)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="tune each task's methods in this many local processes, in parts of near-equal "
        "cost (e.g. one per core with --threads 1); collection stays in the main process and "
        "the results equal a one-process run's",
    )
    p.add_argument(
        "--shard",
        type=shard_arg,
        default=None,
        metavar="I/N",
        help="only the groups of shard I of N (for several machines or a Slurm array); then "
        "--assemble over the same --out writes the tables from the records",
    )
    p.add_argument(
        "--assemble",
        action="store_true",
        help="only write the tables from the records of finished shards (loads no model)",
    )
    slurm = p.add_argument_group(
        "cluster", "run N shards as a job array through submitit, wait, then assemble"
    )
    slurm.add_argument("--slurm", type=int, default=None, metavar="N", help="number of shards")
    slurm.add_argument(
        "--slurm-local",
        action="store_true",
        help="run the jobs with submitit's local executor (try a launch on one machine)",
    )
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-time", type=int, default=240, help="minutes per job")
    slurm.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job")
    slurm.add_argument("--slurm-cpus", type=int, default=4, help="CPUs per job")
    slurm.add_argument("--slurm-mem", type=int, default=32, help="GB of memory per job")
    p.add_argument("--no-progress", action="store_true")


def shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
    if args.quick:
        config = quick_config(released=args.released)
    elif args.released:
        config = released_config()
    else:
        config = ReproduceConfig()
    changes = given(
        args,
        [
            "data_dir",
            "style",
            "demos",
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
        if getattr(args, name) is not UNSET:
            changes[name] = tuple(getattr(args, name))
    if args.grid_overrides:
        from ..methods import get_method

        grids = dict(config.grids)
        for text in args.grid_overrides:
            name, spec = parse_grid(text)
            method = get_method(name)
            grids[name] = spec if spec is not None else (method.settings or None, method.strengths)
        changes["grids"] = grids
    return dataclasses.replace(config, **changes)


def _launch(config: ReproduceConfig, args: argparse.Namespace) -> ReproduceResult:
    from ..experiments.launch import slurm_executor, submit_shards, wait_and_assemble

    if args.slurm < 1 or args.shard is not None:
        raise SystemExit("steerlens reproduce: give --slurm N (N >= 1) without --shard")
    parameters: dict[str, Any] = {"timeout_min": args.slurm_time, "mem_gb": args.slurm_mem}
    if not args.slurm_local:
        parameters.update(
            slurm_partition=args.slurm_partition,
            gpus_per_node=args.slurm_gpus,
            cpus_per_task=args.slurm_cpus,
        )
    executor = slurm_executor(Path(config.out) / "jobs", local=args.slurm_local, **parameters)
    jobs = submit_shards(
        config, args.slurm, executor, workers=args.workers, threads=args.threads or 1
    )
    print(
        f"submitted {len(jobs)} shard jobs ({', '.join(j.job_id for j in jobs)}); logs in "
        f"{config.out}/jobs; waiting for them, then assembling"
    )
    return wait_and_assemble(config, jobs)


def _reproduce_main(args: argparse.Namespace) -> int:
    config = reproduce_config(args)
    set_threads(args.threads)
    if args.estimate:
        from ..models import load_model

        for name in config.models:
            model = load_model(name, device=config.device)
            print(f"{model_label(name)}:")
            print(estimate_table(estimate(config, model, use_cpu_time=args.estimate_cpu)))
        return 0
    if args.workers < 1:
        raise SystemExit(f"steerlens reproduce: --workers must be at least 1, got {args.workers}")
    if args.assemble:
        result = assemble(config)
    elif args.slurm is not None:
        result = _launch(config, args)
    else:
        result = run_reproduction(
            config,
            progress=not args.no_progress,
            workers=args.workers,
            threads=args.threads or 1,
            shard=args.shard,
        )
    print(
        f"{len(result.computed)} cells computed, {len(result.reused)} reused; wrote "
        f"{result.out}/results.md and results.csv ({result.seconds:.0f} s wall, "
        f"{result.cpu_seconds:.0f} s CPU)"
    )
    return 0
