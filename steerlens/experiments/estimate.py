"""Cost estimate of a reproduction: measure one evaluation per task, count the forward passes.

`steerlens reproduce --estimate` prints `estimate_table(estimate(config, model))` and runs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._backend import HookedTransformer
from ..evaluate import EncodedItems, encode_items, evaluate
from ..methods import BASELINE, get_method
from ..tokens import prompt_ids
from .reproduce import ReproduceConfig, TaskLoader, default_task_loader, format_label

# A one-token pass on a cached prefix, in prompt-token forwards, when the model is not at hand
# (`_one_token_cost(model)` computes it: the blocks' work plus the unembedding, over the blocks').
ONE_TOKEN_COST = 1.3


def _one_token_cost(model: HookedTransformer) -> float:
    """A one-token pass (a sweep cell on a cached prefix) in units of one prompt token's forward:
    the blocks' work for one token plus the unembedding, over the blocks' work for one token."""
    blocks = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks."))
    return 1.0 + model.cfg.d_vocab * model.cfg.d_model / max(blocks, 1)


def count_forwards(
    config: ReproduceConfig,
    train_tokens: Sequence[int],
    dev_tokens: Sequence[int],
    test_tokens: Sequence[int],
    *,
    n_layers: int,
    one_token: float = ONE_TOKEN_COST,
) -> dict[str, float]:
    """Token-forwards (tokens pushed through all blocks) one (task, format) group of the config
    costs, by stage. Every-position sweeps are counted from layer 0: an upper bound, since a sweep
    cell runs only from its mask's first steered layer (in pilots the runs took 0.6-0.7 of it)."""
    methods = [get_method(m) for m in config.methods if m != BASELINE]
    last = [
        m for m in methods if m.positions in ("last", "from", "each_last")
    ]  # one token per cell
    every = [m for m in methods if m.positions == "all"]
    n_cells = {}
    for m in methods:
        settings, strengths = config.method_grid(m.name, n_layers)
        n_cells[m.name] = len(dict.fromkeys(settings)) * len(strengths)
    dev_sum, test_sum = float(sum(dev_tokens)), float(sum(test_tokens))
    dev = 0.0
    if last:
        dev += dev_sum + len(dev_tokens) * one_token * sum(n_cells[m.name] for m in last)
    dev += sum(dev_sum * (1 + n_cells[m.name]) for m in every)
    if not methods and BASELINE in config.methods:
        dev += dev_sum
    test = len(every) * test_sum
    if last or BASELINE in config.methods:
        test += test_sum + len(test_tokens) * one_token * len(last)
    formats = len({m.pair_format for m in methods})  # one collection per way of writing texts
    return {"collect": formats * float(sum(train_tokens)), "dev": dev, "test": test}


def estimate(
    config: ReproduceConfig,
    model: HookedTransformer,
    *,
    task_loader: TaskLoader | None = None,
    calibrate: int = 16,
    use_cpu_time: bool = False,
) -> list[dict[str, Any]]:
    """Measure one batched evaluation of each (task, format) and predict the config's run time.

    For each group: times `evaluate` on `calibrate` test items of about the median length (after
    a warm-up) to get seconds per prompt token on this machine, counts the tokens the config's collection, dev
    sweeps and test scoring push through the model (`count_forwards`), and multiplies.
    Wall time is right on an idle machine; on a busy one, `use_cpu_time` with one torch thread
    measures the compute itself (the wall time one idle core would take).
    """
    load = task_loader or default_task_loader(config)
    one = _one_token_cost(model)
    rows = []
    warmed = False
    for task_name in config.tasks:
        for n_shot in config.shots:
            task = load(task_name, n_shot, model)
            dev, test = encode_items(model, task.dev), encode_items(model, task.test)
            pairs = [prompt_ids(model, ex.prompt) for ex in task.train]
            train_tokens = [len(p) + 2 for p in pairs]  # the prompt once, then each side's answer
            # items of about the median length: the run sorts items by length, so its batches
            # carry little padding
            order = sorted(range(len(test.prompts)), key=lambda i: len(test.prompts[i]))
            mid = max(0, len(order) // 2 - calibrate // 2)
            pick = order[mid : mid + calibrate]
            sample = EncodedItems([test.prompts[i] for i in pick], [test.options[i] for i in pick])
            if not warmed:
                evaluate(model, sample, batch_size=config.batch_size, progress=False)
                warmed = True
            clock, cpu = time.perf_counter(), time.process_time()
            evaluate(model, sample, batch_size=config.batch_size, progress=False)
            seconds = time.perf_counter() - clock
            if use_cpu_time:
                seconds = time.process_time() - cpu
            per_token = seconds / sum(len(p) for p in sample.prompts)
            counts = count_forwards(
                config,
                train_tokens,
                [len(p) for p in dev.prompts],
                [len(p) for p in test.prompts],
                one_token=one,
                n_layers=model.cfg.n_layers,
            )
            rows.append(
                {
                    "task": task_name,
                    "format": format_label(n_shot),
                    "sizes": (len(task.train), len(task.dev), len(task.test)),
                    "mean_test_tokens": sum(len(p) for p in test.prompts) / len(test.prompts),
                    "ms_per_item": 1000 * seconds / len(sample.prompts),
                    "ms_per_token": 1000 * per_token,
                    "token_forwards": counts,
                    "seconds": {k: v * per_token for k, v in counts.items()},
                }
            )
    return rows


def estimate_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of `estimate` rows with a total line."""
    lines = [
        "| task | format | pairs/dev/test | test prompt tokens | ms per test item (measured) "
        "| collect s | dev sweeps s | test s | total min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for r in rows:
        s = r["seconds"]
        t = sum(s.values())
        total += t
        lines.append(
            f"| {r['task']} | {r['format']} | {'/'.join(map(str, r['sizes']))} | "
            f"{r['mean_test_tokens']:.0f} | {r['ms_per_item']:.0f} | {s['collect']:.0f} | "
            f"{s['dev']:.0f} | {s['test']:.0f} | {t / 60:.1f} |"
        )
    lines.append(f"| **all** | | | | | | | | **{total / 60:.1f}** |")
    return "\n".join(lines)
