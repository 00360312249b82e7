"""The benchmark's measurements against its targets, each a function of a loaded model and its
inputs that returns a JSON-ready dict (a section of `results.json`): 1 collection throughput,
2 peak memory (the part that runs in a child process), 3 steering overhead, 4 sweeps (+ equality
with the naive sweep, asserted), 5 scaling. Section 6 is in `_diagnostics.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformer_lens import HookedTransformer

from steerlens import (
    EncodedItems,
    Example,
    Mask,
    SweepResult,
    collect_activations,
    collect_differences,
    encode_items,
    evaluate,
    steer,
    sweep,
)
from steerlens.collect import contrastive_ids
from steerlens.sites import hook_name
from steerlens.tokens import batches, left_pad, pad_id, prompt_ids

if __package__:  # python -m benchmarks.run
    from ._harness import Clock, PeakRSS, race, status_kb
else:  # python benchmarks/run.py: this directory is on sys.path
    from _harness import Clock, PeakRSS, race, status_kb

SITES = ["head", "neuron", "mlp_out", "resid"]
Pairs = Sequence[tuple[list[int], list[int]]]

# ---- 1. collection ---------------------------------------------------------------------------


def plain_forward(model: HookedTransformer, seqs: Sequence[Sequence[int]], batch_size: int) -> None:
    """The physical floor: one batched forward over every text through the last block."""
    with torch.inference_mode():
        for chunk in batches(len(seqs), batch_size):
            tokens, mask = left_pad([seqs[i] for i in chunk], pad_id(model), model.cfg.device)
            model(tokens, attention_mask=mask, stop_at_layer=model.cfg.n_layers)


def reference_collect(
    model: HookedTransformer, pairs: Pairs, sites: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The official-code pattern: one text at a time, `run_with_cache` of every hook, everything
    copied out to host memory, then the last-token activations picked and differenced."""
    names = {s: [hook_name(s, layer) for layer in range(model.cfg.n_layers)] for s in sites}
    diffs: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    with torch.inference_mode():
        for pair in pairs:
            acts = []
            for ids in pair:
                _, cache = model.run_with_cache(torch.tensor([ids], device=model.cfg.device))
                copied = {k: v.detach().to("cpu", copy=True) for k, v in cache.items()}
                acts.append({s: torch.stack([copied[n][0, -1] for n in names[s]]) for s in sites})
            for s in sites:
                diffs[s].append(acts[0][s] - acts[1][s])
    return {s: torch.stack(d).mean(0) for s, d in diffs.items()}


def bench_collection(
    model: HookedTransformer,
    examples: Sequence[Example],
    clock: Clock,
    *,
    n_main: int,
    n_ref: int,
    rounds: int,
) -> dict[str, Any]:
    main = examples[:n_main]
    pairs = contrastive_ids(model, main)
    order = sorted(range(len(pairs)), key=lambda i: -max(len(pairs[i][0]), len(pairs[i][1])))
    texts = [seq for i in order for seq in pairs[i]]  # the same texts, batches and order
    t = race(
        clock,
        rounds,
        steerlens=lambda: collect_differences(model, main, SITES, batch_size=16, progress=False),
        plain_forward=lambda: plain_forward(model, texts, 32),
    )
    # for reference: the same texts collected whole, without sharing prompts
    t |= race(
        clock,
        1,
        full_texts=lambda: collect_activations(model, texts, SITES, batch_size=32, progress=False),
    )
    ref_pairs = contrastive_ids(model, examples[:n_ref])
    t_ref = race(clock, 1, reference=lambda: reference_collect(model, ref_pairs, SITES))
    # the reference and steerlens agree (first 8 pairs)
    ref = reference_collect(model, ref_pairs[:8], SITES)
    ours = collect_differences(model, examples[:8], SITES, progress=False)
    max_diff = max(float((ours[s].mean - ref[s]).abs().max()) for s in SITES)
    assert max_diff < 1e-2, f"reference and steerlens differ by {max_diff}"
    per_pair = {k: v / n_main for k, v in t.items()}
    ref_per_pair = t_ref["reference"] / n_ref
    tokens = sum(len(s) for s in texts)
    return {
        "n_pairs": n_main,
        "n_pairs_reference": n_ref,
        "mean_text_tokens": round(tokens / len(texts), 1),
        "seconds": {
            **{k: round(v, 3) for k, v in t.items()},
            "reference": round(t_ref["reference"], 3),
        },
        "seconds_per_pair": {
            **{k: round(v, 4) for k, v in per_pair.items()},
            "reference": round(ref_per_pair, 4),
        },
        "throughput_vs_plain_forward": round(t["plain_forward"] / t["steerlens"], 2),
        "plain_forward_ms_per_token": round(1000 * t["plain_forward"] / tokens, 3),
        "full_texts_vs_plain_forward": round(t["plain_forward"] / t["full_texts"], 2),
        "speedup_vs_reference": round(ref_per_pair / per_pair["steerlens"], 1),
        "reference_max_abs_diff_of_means": max_diff,
        "note": f"reference timed on {n_ref} pairs, per-pair cost extrapolated to {n_main}",
    }


# ---- 2. memory (run in a child process of its own, one per configuration) ---------------------


def measure_memory(
    model: HookedTransformer, examples: Sequence[Example], kind: str
) -> dict[str, Any]:
    """Collect the examples at all four sites: resident memory before and the peak during it."""
    n = len(examples)
    collect_differences(model, examples[:2], SITES, progress=False)  # warm-up
    cuda = model.W_U.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = status_kb("VmRSS")
    peak_rss = PeakRSS()
    peak_rss.reset()  # so that the peak no longer counts model loading
    start = time.process_time()
    collect_differences(model, examples, SITES, batch_size=16, progress=False)
    seconds = time.process_time() - start
    peak = peak_rss.peak_kb()
    # for scale: one plain forward over the 32 longest texts (one collection batch)
    plain = None
    if peak_rss.resettable:
        pairs = contrastive_ids(model, examples)
        texts = sorted((t for p in pairs for t in p), key=len, reverse=True)[:32]
        rss = status_kb("VmRSS")
        peak_rss.reset()
        plain_forward(model, texts, 32)
        plain = round((peak_rss.peak_kb() - rss) / 1024, 1)
    out: dict[str, Any] = {
        "tool": "steerlens",
        "kind": kind,
        "n_pairs": n,
        "mean_prompt_tokens": round(sum(len(prompt_ids(model, e.prompt)) for e in examples) / n, 1),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_minus_before_mb": round((peak - before) / 1024, 1),
        "cpu_seconds": round(seconds, 1),
        "plain_forward_batch_peak_mb": plain,
        "how": peak_rss.how,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default"),
    }
    if cuda:
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# ---- 3. steering overhead --------------------------------------------------------------------


def bench_overhead(
    model: HookedTransformer, items: EncodedItems, sadi: Mask, aus: Mask, clock: Clock, rounds: int
) -> dict[str, Any]:
    def steered(mask: Mask, strength: float) -> Callable[[], None]:
        def run() -> None:
            with steer(model, mask, strength):
                evaluate(model, items, progress=False)

        return run

    t = race(
        clock,
        rounds,
        none=lambda: evaluate(model, items, progress=False),
        sadi=steered(sadi, 2.0),
        austeer=steered(aus, 2.0),
    )
    return {
        "n_examples": len(items.prompts),
        "sadi_k": sadi.k,
        "austeer_k": aus.k,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "sadi_vs_none": round(t["sadi"] / t["none"], 3),
        "austeer_vs_none": round(t["austeer"] / t["none"], 3),
    }


# ---- 4. sweeps -------------------------------------------------------------------------------


def equality_check(
    model: HookedTransformer,
    mask: Mask,
    items: EncodedItems,
    ks: Sequence[int],
    strengths: Sequence[float],
) -> dict[str, Any]:
    """The fast sweep equals the naive one (`fast=False`): equal accuracy grids, answer log-probs
    within 1e-3 (asserted)."""
    fast = sweep(model, items, mask, strengths, ks=ks, progress=False)
    naive = sweep(model, items, mask, strengths, ks=ks, fast=False, progress=False)
    return {
        "n_examples": len(items.prompts),
        "n_settings": len(ks) * len(strengths),
        "max_abs_logprob_diff": assert_same_sweep(fast, naive),
    }


def assert_same_sweep(fast: SweepResult, naive: SweepResult) -> float:
    assert (fast.accuracy == naive.accuracy).all() and (fast.restricted == naive.restricted).all()
    diff = max(
        float((a.answer_logprob - b.answer_logprob).abs().max())
        for a, b in zip(
            [fast.baseline, *fast.results], [naive.baseline, *naive.results], strict=True
        )
    )
    assert diff < 1e-3, f"fast and naive sweeps differ by {diff}"
    return diff


def bench_sweep(
    model: HookedTransformer,
    items: EncodedItems,
    mask: Mask,
    ks: Sequence[int],
    strengths: Sequence[float],
    clock: Clock,
    *,
    check: tuple[EncodedItems, Sequence[int], Sequence[float]],
) -> dict[str, Any]:
    t = race(
        clock,
        1,
        eval=lambda: evaluate(model, items, progress=False),
        sweep=lambda: sweep(model, items, mask, strengths, ks=ks, progress=False),
    )
    return {
        "n_examples": len(items.prompts),
        "n_settings": len(ks) * len(strengths),
        "first_steered_layers": sorted({int(mask.top(k).layers.min()) for k in ks}),
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "sweep_vs_eval": round(t["sweep"] / t["eval"], 2),
        "equality_check": equality_check(model, mask, *check),
    }


def bench_austeer_sweep(
    model: HookedTransformer,
    items: EncodedItems,
    mask: Mask,
    ks: Sequence[int],
    strengths: Sequence[float],
    clock: Clock,
    *,
    check: tuple[EncodedItems, Sequence[int], Sequence[float]],
    whole_grid: bool,
) -> dict[str, Any]:
    """All-position sweeps cost about one forward from the first steered layer per setting,
    whatever the strength. On a CPU (arithmetic-bound) one strength per K is timed and scaled to
    all strengths; elsewhere the whole grid is timed, packed (several settings per forward pass,
    the default there) and one setting per pass."""
    n = model.cfg.n_layers
    starts = [int(mask.top(k).layers.min()) for k in ks]
    out: dict[str, Any] = {
        "n_examples": len(items.prompts),
        "n_settings": len(ks) * len(strengths),
        "first_steered_layers": starts,
        "layer_fraction_model": round(1 + len(strengths) * sum((n - s) / n for s in starts), 2),
    }
    if not whole_grid:
        t = race(
            clock,
            1,
            eval=lambda: evaluate(model, items, progress=False),
            one_strength=lambda: sweep(model, items, mask, strengths[:1], ks=ks, progress=False),
        )
        per_strength = t["one_strength"] - t["eval"]  # the sweep's own unsteered pass ~ one eval
        estimate = t["eval"] + len(strengths) * per_strength
        out["n_settings_timed"] = len(ks)
        out["seconds"] = {
            "eval": round(t["eval"], 3),
            "sweep_one_strength": round(t["one_strength"], 3),
            "sweep_estimate": round(estimate, 3),
        }
        out["sweep_vs_eval"] = round(estimate / t["eval"], 2)
        out["note"] = (
            f"timed with 1 strength x {len(ks)} K; 48-setting time = eval + "
            f"{len(strengths)} x (timed sweep - eval)"
        )
    else:
        t = race(
            clock,
            1,
            eval=lambda: evaluate(model, items, progress=False),
            packed=lambda: sweep(model, items, mask, strengths, ks=ks, progress=False),
            one_per_pass=lambda: sweep(
                model, items, mask, strengths, ks=ks, progress=False, settings_per_pass=1
            ),
        )
        out["n_settings_timed"] = out["n_settings"]
        out["seconds"] = {k: round(v, 3) for k, v in t.items()}
        out["sweep_vs_eval"] = round(t["packed"] / t["eval"], 2)
        out["one_per_pass_vs_eval"] = round(t["one_per_pass"] / t["eval"], 2)
    out["equality_check"] = equality_check(model, mask, *check)
    return out


# ---- 5. scaling ------------------------------------------------------------------------------


def bench_scaling(
    model: HookedTransformer,
    tasks: Mapping[str, Sequence[Example]],
    sadi: Mask,
    clock: Clock,
    *,
    size: Mapping[str, Any],
    ks: Sequence[int],
    strengths: Sequence[float],
    collected: Mapping[str, Any],
) -> dict[str, Any]:
    """Small tables: collection vs N and vs length; SADI sweep vs settings and vs prompt length.
    `collected` is section 1's result, whose time is the largest N."""

    def collect(exs: Sequence[Example]) -> float:
        return race(clock, 1, c=lambda: collect_differences(model, exs, SITES, progress=False))["c"]

    vs_n = {n: collect(tasks["short"][:n]) for n in size["scale_n"]}
    vs_n[collected["n_pairs"]] = collected["seconds"]["steerlens"]
    out: dict[str, Any] = {
        "collection_vs_n": [{"n_pairs": n, "seconds": round(vs_n[n], 2)} for n in sorted(vs_n)]
    }
    out["collection_vs_length"] = []
    for kind in ("short", "medium", "long"):
        exs = tasks[kind][: size["scale_len"]]
        toks = sum(len(p) for p, _ in contrastive_ids(model, exs)) / len(exs)
        out["collection_vs_length"].append(
            {
                "task": kind,
                "n_pairs": len(exs),
                "mean_text_tokens": round(toks, 1),
                "seconds_per_pair": round(collect(exs) / len(exs), 4),
            }
        )
    items = encode_items(model, tasks["medium_dev"][: size["scale_dev"]])
    t_eval = race(clock, 1, e=lambda: evaluate(model, items, progress=False))["e"]
    out["sweep_vs_settings"] = []
    for n_k in (1, len(ks)):
        some = ks[:n_k]
        t = race(
            clock,
            1,
            s=lambda some=some: sweep(model, items, sadi, strengths, ks=some, progress=False),
        )
        out["sweep_vs_settings"].append(
            {
                "n_settings": n_k * len(strengths),
                "n_examples": len(items.prompts),
                "seconds": round(t["s"], 2),
                "vs_eval": round(t["s"] / t_eval, 2),
            }
        )
    out["sweep_vs_length"] = []
    for kind in ("short_dev", "long_dev"):  # medium: the whole-grid row above
        it = encode_items(model, tasks[kind][: size["scale_len"]])
        t = race(
            clock,
            1,
            e=lambda it=it: evaluate(model, it, progress=False),
            s=lambda it=it: sweep(model, it, sadi, strengths, ks=ks, progress=False),
        )
        mean = sum(len(p) for p in it.prompts) / len(it.prompts)
        out["sweep_vs_length"].append(
            {
                "task": kind.removesuffix("_dev"),
                "n_examples": len(it.prompts),
                "mean_prompt_tokens": round(mean, 1),
                "eval_seconds": round(t["e"], 2),
                "sweep48_seconds": round(t["s"], 2),
                "vs_eval": round(t["s"] / t["e"], 2),
            }
        )
    return out
