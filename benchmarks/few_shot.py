"""k-shot cost per item against zero-shot: collection, evaluation and a SADI sweep.

    python benchmarks/few_shot.py [--task sst2] [--n 32] [--shots 4] [--threads 1]

For each prompt format (0-shot; k-shot with one demonstration set shared by every prompt, whose
prefix runs once; k-shot drawn per prompt, where nothing is shared) it times, on the embedded
model, collecting the differences of `n` train pairs (heads), evaluating `n` dev items, and a
SADI-head sweep of 4 sizes x 4 strengths over them, and prints milliseconds per item and the
ratio to zero-shot. Each figure is the fastest of `--rounds` runs. The issue's target: at most
1.5x zero-shot for the shared format.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

import steerlens


def _fastest(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = steerlens.load_model()
    formats = {"0-shot": (0, "shared"), f"{args.shots}-shot shared": (args.shots, "shared")}
    formats[f"{args.shots}-shot per item"] = (args.shots, "per_item")
    rows = {}
    for label, (n_shot, demos) in formats.items():
        task = steerlens.load_task(
            args.task, data_dir=args.data_dir, n_shot=n_shot, demos=demos, seed=0
        ).with_limits(train=args.n, dev=args.n)
        dev = steerlens.encode_items(model, task.dev)
        diffs = steerlens.collect_differences(model, task.train, site="head", progress=False)
        mask = steerlens.sadi_mask(diffs, 8)
        tokens = sum(len(p) for p in dev.prompts) / len(dev.prompts)
        times = {
            "collection": _fastest(
                lambda task=task: steerlens.collect_differences(
                    model, task.train, site="head", progress=False
                ),
                args.rounds,
            ),
            "evaluation": _fastest(
                lambda dev=dev: steerlens.evaluate(model, dev, progress=False), args.rounds
            ),
            "SADI sweep (16 cells)": _fastest(
                lambda dev=dev, mask=mask: steerlens.sweep(
                    model, dev, mask, [0.5, 1.0, 2.0, 4.0], ks=[1, 2, 4, 8], progress=False
                ),
                args.rounds,
            ),
        }
        rows[label] = (tokens, {k: 1000 * v / args.n for k, v in times.items()})
    base = rows["0-shot"][1]
    print(
        f"{args.task}, {args.n} items, embedded model, {args.threads} thread(s), "
        f"load {os.getloadavg()[0]:.1f}; ms per item (x zero-shot)"
    )
    print(f"| format | prompt tokens | {' | '.join(base)} |")
    print("|---|---|" + "---|" * len(base))
    for label, (tokens, ms) in rows.items():
        cells = " | ".join(f"{v:.0f} ({v / base[k]:.2f}x)" for k, v in ms.items())
        print(f"| {label} | {tokens:.0f} | {cells} |")


if __name__ == "__main__":
    main()
