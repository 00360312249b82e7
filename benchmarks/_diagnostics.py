"""Section 6 of the benchmark, diagnostics: what a one-token KV-cached pass (one step of a
last-token sweep) spends its time on, with and without `matmul_layout`, at several thread counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from steerlens import EncodedItems
from steerlens._passes import matmul_layout
from steerlens.tokens import left_pad, pad_id

if __package__:  # python -m benchmarks.run
    from ._harness import Clock, race
else:  # python benchmarks/run.py: this directory is on sys.path
    from _harness import Clock, race


def bench_diagnostics(model: HookedTransformer, items: EncodedItems) -> dict[str, Any]:
    """One sweep step alone (32 rows): TransformerLens' weight layout vs `matmul_layout`, the same
    matrix products alone, at 1, 2 and the current number of threads (wall-clock: the point is
    waiting for cores), and the top ops of a torch profile (CPU only)."""
    cfg, dev = model.cfg, model.cfg.device
    wall = Clock.wall(dev)
    idx = list(range(min(32, len(items.prompts))))
    # The prefix cache and one-token pass of `sweep`'s last-token path, written out: the package
    # runs them only inside a whole sweep (steering hooks, log-softmax, tallies), while this
    # section times and profiles that single pass alone, with and without `matmul_layout`.
    prefix, mask = left_pad([items.prompts[i][:-1] for i in idx], pad_id(model), dev)
    last = torch.tensor([[items.prompts[i][-1]] for i in idx], device=dev)
    ones = torch.ones_like(last)

    def one_token() -> None:
        resid = model(last, attention_mask=ones, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
        model.unembed(model.ln_final(resid[:, -1:]))

    assert cfg.d_mlp is not None, "a model with MLP blocks"
    x = torch.zeros(len(idx), cfg.d_model, device=dev)
    h = torch.zeros(len(idx), cfg.d_mlp, device=dev)
    products = [(x, model.unembed.W_U.T.contiguous())]
    for block in model.blocks:
        attn: Any = block.attn  # with grouped K/V heads, its own K/V weights are `_W_K`, `_W_V`
        mlp: Any = block.mlp  # gated (`W_gate`), as in Llama-shaped models
        for w in (attn.W_Q, getattr(attn, "_W_K", attn.W_K), getattr(attn, "_W_V", attn.W_V)):
            products.append((x, w.permute(0, 2, 1).reshape(-1, cfg.d_model).contiguous()))
        products.append((x, attn.W_O.permute(2, 0, 1).reshape(cfg.d_model, -1).contiguous()))
        products += [(x, w.T.contiguous()) for w in (mlp.W_in, mlp.W_gate)]
        products.append((h, mlp.W_out.T.contiguous()))

    def matmuls_only() -> None:  # the pass's matrix products alone (its floor), F.linear layout
        for a, w in products:
            torch.nn.functional.linear(a, w)

    out: dict[str, Any] = {"batch_rows": len(idx), "prefix_tokens": int(prefix.shape[1])}
    with torch.inference_mode():
        cache = TransformerLensKeyValueCache.init_cache(cfg, dev, len(idx))
        model(prefix, attention_mask=mask, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
        cache.freeze()
        threads = torch.get_num_threads()
        for n_threads in sorted({1, 2, threads}):
            torch.set_num_threads(n_threads)
            rounds = 2 if n_threads == 1 else 1
            t = race(wall, rounds, plain=one_token, matmuls_only=matmuls_only)
            with matmul_layout(model):
                t.update(race(wall, rounds, matmul_layout=one_token))
            out[f"threads_{n_threads}"] = {k: round(v, 4) for k, v in t.items()}
        torch.set_num_threads(threads)
        if wall.device.type == "cpu":
            top = {"plain": top_ops(one_token)}
            with matmul_layout(model):
                top["matmul_layout"] = top_ops(one_token)
            out["profile_top_ops"] = top
    return out


def top_ops(fn: Callable[[], None], n: int = 4) -> list[str]:
    """The `n` ops with the most self CPU time in one call of `fn`, with their shares."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in events[:n]]
