"""`steerlens ablations`: the papers' ablations on one task, with figures."""

from __future__ import annotations

import argparse
import time

from ..experiments import (
    AblationConfig,
    run_ablations,
)
from ..experiments.ablations import ABLATIONS
from ._common import Subparsers, set_threads


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
    from ..models import load_model
    from ..tasks import load_task

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
    set_threads(args.threads)
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
