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
from transformer_lens import HookedTransformer

import steerlens


def _fastest(
    fn: Callable[[], object], rounds: int, timer: Callable[[], float] = time.perf_counter
) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = timer()
        fn()
        best = min(best, timer() - start)
    return best


def measure(
    model: HookedTransformer,
    task: str,
    data_dir: str | None,
    n: int,
    shots: int,
    rounds: int,
    timer: Callable[[], float] = time.perf_counter,
    per_item: bool = True,
) -> dict[str, tuple[float, dict[str, float]]]:
    """`{format: (mean prompt tokens, {stage: ms per item})}` for 0-shot, k-shot shared and
    (`per_item`) k-shot drawn per prompt, each the fastest of `rounds` by `timer`."""
    formats = {"0-shot": (0, "shared"), f"{shots}-shot shared": (shots, "shared")}
    if per_item:
        formats[f"{shots}-shot per item"] = (shots, "per_item")
    rows = {}
    for label, (n_shot, demos) in formats.items():
        loaded = steerlens.load_task(
            task, data_dir=data_dir, n_shot=n_shot, demos=demos, seed=0
        ).with_limits(train=n, dev=n)
        dev = steerlens.encode_items(model, loaded.dev)
        diffs = steerlens.collect_differences(model, loaded.train, site="head", progress=False)
        mask = steerlens.sadi_mask(diffs, 8)
        tokens = sum(len(p) for p in dev.prompts) / len(dev.prompts)
        times = {
            "collection": _fastest(
                lambda t=loaded: steerlens.collect_differences(
                    model, t.train, site="head", progress=False
                ),
                rounds,
                timer,
            ),
            "evaluation": _fastest(
                lambda dev=dev: steerlens.evaluate(model, dev, progress=False), rounds, timer
            ),
            "SADI sweep (16 cells)": _fastest(
                lambda dev=dev, mask=mask: steerlens.sweep(
                    model, dev, mask, [0.5, 1.0, 2.0, 4.0], ks=[1, 2, 4, 8], progress=False
                ),
                rounds,
                timer,
            ),
        }
        rows[label] = (tokens, {k: 1000 * v / n for k, v in times.items()})
    return rows


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
    rows = measure(model, args.task, args.data_dir, args.n, args.shots, args.rounds)
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
