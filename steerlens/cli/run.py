"""`steerlens run`: every method on one task, tuned on dev, scored once (a JSONL file scored on
generated text goes to `run_generation`, TruthfulQA, scored by MC1/MC2, to `run_mc`)."""

from __future__ import annotations

import argparse
import dataclasses
import time

from ..evaluate import METRICS
from ..experiments import RunConfig, run_job
from ..experiments.generation_job import GenerationConfig, run_generation
from ..experiments.main_job import CONTROLS, default_shots
from ..experiments.mc_job import MC_GRIDS, McConfig, is_mc_name, run_mc
from ..methods import METHOD_NAMES
from ..tasks import BENCHMARK_TASKS, DEMO_MODES, PAPER_TASKS, is_generation_file
from ._common import UNSET, Subparsers, split_size

MC_GRID_CHOICES = ("small", "quick", "run", "reproduce")


def _run_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run", help="all methods on one task: tune on dev, score test, write a table"
    )
    d = RunConfig()
    p.add_argument(
        "--model",
        default=None,
        help="gemma-3-270m (opt-in), a .gguf file, a local Hugging Face directory or a "
        "TransformerLens name (default: embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--task",
        default=d.task,
        help="built-in name (sentiment, larger, arithmetic), "
        f"paper benchmark ({', '.join(PAPER_TASKS)}), further benchmark "
        f"({', '.join(BENCHMARK_TASKS)}, mmlu:<subject>[,<subject>]) or a .jsonl path",
    )
    p.add_argument("--data-dir", default=None, help="benchmark data directory (or $STEERLENS_DATA)")
    p.add_argument("--style", default=d.style, choices=["raw", "chat"], help="prompt format")
    p.add_argument(
        "--n-shot",
        type=int,
        default=None,
        help="train demonstrations per prompt (default: 4 for the built-in sentiment task, where "
        "the model needs them to follow the answer format; 0 for every other task)",
    )
    p.add_argument(
        "--demos",
        default=d.demos,
        choices=DEMO_MODES,
        help="k-shot: one demonstration set before every prompt (shared; --seed picks it) or a "
        "draw per prompt",
    )
    p.add_argument(
        "--n-train", type=split_size, default=d.n_train, help="contrastive pairs ('all')"
    )
    p.add_argument("--n-dev", type=split_size, default=d.n_dev, help="dev items for tuning ('all')")
    p.add_argument("--n-test", type=split_size, default=d.n_test, help="test items ('all')")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=METHOD_NAMES,
        help=f"default: {' '.join(d.methods)} (a generation file: "
        f"{' '.join(GenerationConfig().methods)}; truthfulqa: {' '.join(McConfig().methods)})",
    )
    p.add_argument(
        "--controls",
        action="store_true",
        help=f"also run the ablation controls ({', '.join(CONTROLS)}): do the method's units "
        "matter, or would random ones, a fixed vector or another ranking do as well?",
    )
    p.add_argument(
        "--grid",
        default=UNSET,
        choices=MC_GRID_CHOICES,
        help="truthfulqa only: small (default: 2 settings x 2 strengths for "
        f"{', '.join(MC_GRIDS)}, CAA its 3 layers x 2; other methods their quick grid) or a "
        "registry grid for every method (run: the main job's, 75 cells for the default methods)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generation files only: the most tokens generated (default: the rule's)",
    )
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
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes that tune the methods side by side, each with an equal share of the "
        "torch threads; the table equals a one-process run's. On a 2-core CPU one process with "
        "two threads is as fast; more pay where one process cannot keep every core busy",
    )


def run_config(args: argparse.Namespace) -> RunConfig:
    """The `RunConfig` of parsed `steerlens run` arguments."""
    return RunConfig(
        model=args.model,
        task=args.task,
        data_dir=args.data_dir,
        style=args.style,
        n_shot=default_shots(args.task) if args.n_shot is None else args.n_shot,
        demos=args.demos,
        n_train=args.n_train,
        n_dev=args.n_dev,
        n_test=args.n_test,
        methods=tuple(args.methods or RunConfig().methods)
        + tuple(m for m in CONTROLS if args.controls and m not in (args.methods or ())),
        metric=args.metric,
        answer_space=args.answer_space,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        out=args.out,
        workers=args.workers,
    )


def _run_main(args: argparse.Namespace) -> int:
    config = run_config(args)
    start = time.perf_counter()
    if is_generation_file(config.task):
        return _run_generation(config, args)
    if is_mc_name(config.task):
        return _run_mc(config, args)
    if args.grid is not UNSET:
        raise ValueError("--grid applies to truthfulqa only (other tasks use the main job's grids)")
    result = run_job(config)
    print(result.table)
    print(
        f"\nwrote {result.out}/results.md and results.csv "
        f"({time.perf_counter() - start:.0f} s in all)"
    )
    return 0


def _run_generation(config: RunConfig, args: argparse.Namespace) -> int:
    """`steerlens run` on a JSONL file scored on generated text (`run_generation`)."""
    gen = GenerationConfig(
        task=config.task,
        model=config.model,
        style=config.style,
        n_shot=config.n_shot,
        n_train=config.n_train,
        n_dev=config.n_dev,
        n_test=config.n_test,
        max_new_tokens=args.max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
        out=config.out,
    )
    if args.methods:
        gen = dataclasses.replace(gen, methods=tuple(args.methods))
    result = run_generation(gen)
    print((result.out / "results.md").read_text(encoding="utf-8").split("\n## ")[0])
    print(f"wrote {result.out}/results.md and results.json ({result.seconds:.0f} s wall)")
    return 0


def _run_mc(config: RunConfig, args: argparse.Namespace) -> int:
    """`steerlens run --task truthfulqa`: MC1/MC2 over whole answers (`run_mc`)."""
    if config.metric != RunConfig().metric:
        raise ValueError(f"{config.task} is tuned on dev by MC1; --metric does not apply")
    if config.answer_space != "keep":
        raise ValueError(f"{config.task}: --answer-space does not apply (answers are whole texts)")
    grid = "small" if args.grid is UNSET else args.grid
    mc = McConfig(
        task=config.task,
        model=config.model,
        data_dir=config.data_dir,
        style=config.style,
        n_shot=config.n_shot,
        demos=config.demos,
        n_train=config.n_train,
        n_dev=config.n_dev,
        n_test=config.n_test,
        grid="quick" if grid == "small" else grid,
        batch_size=config.batch_size,
        seed=config.seed,
        device=config.device,
        out=config.out,
    )
    if grid != "small":
        mc = dataclasses.replace(mc, grids={})
    if args.methods:
        mc = dataclasses.replace(mc, methods=tuple(args.methods))
    result = run_mc(mc)
    print(result.table)
    print(f"\nwrote {result.out}/results.md and results.json ({result.seconds:.0f} s wall)")
    return 0
