"""Collection: last-token activations of many texts, and paired differences (positive - negative).

Texts are run in left-padded batches; capture hooks keep only position -1 (each row's real last
token), so memory does not grow with sequence length, and the forward stops after the last block
(no unembedding). Paired differences are reduced as they stream in (sums and sign counts), so
memory does not grow with the number of pairs either, unless `keep_pairs=True` (or
`keep_sides=True`, which keeps both texts' activations).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from typing import Any, TypeAlias, overload

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from ._backend import KV_CACHE, HookedTransformer
from ._passes import final_resid, matmul_layout, repeat_cache
from ._prefix import shared_prefix
from ._types import PairFormat
from .differences import Differences
from .models import model_fingerprint
from .pairs import contrastive_ids
from .sites import (
    SITES,
    Site,
    check_site,
    read_hook_name,
    resolve_site,
    site_reader,
    unit_shape,
)
from .tasks import Example
from .tokens import batches, fit_contexts, left_pad, pad_id, prompt_ids

# A site name as a caller gives it: one of `Site`, or an alias ("attention", "ffn", ...).
SiteName: TypeAlias = Site | str
# Several sites collected in the same forward passes (a list or tuple, never a bare string).
SiteNames: TypeAlias = list[str] | tuple[str, ...]
# `model.hooks(fwd_hooks=...)` as TransformerLens types it (a list, so the element type is exact).
FwdHooks: TypeAlias = list[tuple[str | Callable[..., Any], Callable[..., Any]]]


def _last_token_hooks(
    model: HookedTransformer, sites: Sequence[str]
) -> tuple[FwdHooks, Callable[[], dict[str, Tensor]]]:
    """Hooks keeping position -1 of every layer at each site, and a reader of the last pass's
    captures as {site: [batch, layer, *unit]}."""
    store: dict[str, dict[int, Tensor]] = {s: {} for s in sites}

    def capture(site: str, layer: int) -> Callable[[Tensor, object], None]:
        read = site_reader(model, site, layer)

        def hook(act: Tensor, hook: object) -> None:
            store[site][layer] = read(act[:, -1].detach()).clone()

        return hook

    layers = range(model.cfg.n_layers)
    hooks: FwdHooks = [
        (read_hook_name(s, layer), capture(s, layer)) for s in sites for layer in layers
    ]
    return hooks, lambda: {
        s: torch.stack([store[s][layer] for layer in layers], dim=1) for s in sites
    }


def _last_token_batches(
    model: HookedTransformer,
    seqs: Sequence[Sequence[int]],
    sites: Sequence[str],
    batch_size: int,
    *,
    progress: bool | str,
) -> Iterator[tuple[range, dict[str, Tensor]]]:
    """Yield (index range, {site: [batch, layer, *unit]}) for seqs in batches, last token only."""
    hooks, read = _last_token_hooks(model, sites)
    pad = pad_id(model)
    chunks = batches(len(seqs), batch_size)
    desc = progress if isinstance(progress, str) else "collecting"
    layout = matmul_layout(model, unembed=False)  # no unembedding here
    with torch.inference_mode(), layout, model.hooks(fwd_hooks=hooks):
        for chunk in tqdm(chunks, desc=desc, disable=not progress or len(chunks) < 2, leave=False):
            tokens, mask = left_pad([seqs[i] for i in chunk], pad, model.cfg.device)
            final_resid(model, tokens, attention_mask=mask)
            yield chunk, read()


def _shared_length(pos: Sequence[int], neg: Sequence[int]) -> int:
    """Length of the common prefix of a pair, leaving each side at least its last token."""
    n = 0
    for a, b in zip(pos[:-1], neg[:-1], strict=False):
        if a != b:
            break
        n += 1
    return n


def _hooks_active(model: HookedTransformer) -> bool:
    return any(hp.fwd_hooks or hp._forward_hooks for hp in model.hook_dict.values())


# Cached prompt tokens of a batch up to which both answer sides run in one pass over a copied
# cache (a pass's fixed cost outweighs the copy); longer prompts run one pass per side, so that
# collection never holds more than one batch's forward pass (16 BoolQ prompts are ~2800 tokens).
ONE_ANSWER_PASS_TOKENS = 2048


def _pair_batches(
    model: HookedTransformer,
    pairs: Sequence[tuple[list[int], list[int]]],
    sites: Sequence[str],
    batch_size: int,
    *,
    share_prompts: bool = True,
    progress: bool,
) -> Generator[tuple[range, dict[str, Tensor], dict[str, Tensor]], None, None]:
    """Yield (pair range, positive acts, negative acts), each {site: [batch, layer, *unit]}.

    The two texts of a pair share their prompt: it runs once into a frozen KV cache, then each
    side runs only its answer tokens, about half the work of running both texts in full; a prefix
    every prompt shares (k-shot demonstrations) runs once for all pairs (`_prefix`). Other
    active hooks (a `steer` block, say) see whole texts instead, as they would in a plain forward,
    and so does `share_prompts=False`.
    """
    shared = [_shared_length(pos, neg) for pos, neg in pairs]
    if not share_prompts or _hooks_active(model) or min(shared) == 0:
        seqs = [seq for pair in pairs for seq in pair]  # pos, neg interleaved
        texts = _last_token_batches(model, seqs, sites, 2 * batch_size, progress=progress)
        for chunk, acts in texts:
            rows = range(chunk.start // 2, chunk.stop // 2)
            yield rows, {s: a[0::2] for s, a in acts.items()}, {s: a[1::2] for s, a in acts.items()}
        return
    cfg, pad = model.cfg, pad_id(model)
    hooks, read = _last_token_hooks(model, sites)
    chunks = batches(len(pairs), batch_size)
    layout = matmul_layout(model, unembed=False)  # no unembedding here
    with torch.inference_mode(), layout, model.hooks(fwd_hooks=hooks):
        # demonstrations every prompt starts with run once (`_prefix`)
        common = shared_prefix(model, [pos[:n] for (pos, _), n in zip(pairs, shared, strict=True)])
        quiet = not progress or len(chunks) < 2
        for chunk in tqdm(chunks, desc="collecting", disable=quiet, leave=False):
            prompts = [pairs[i][0][: shared[i]] for i in chunk]
            if common is None:
                prefix, mask = left_pad(prompts, pad, cfg.device)
                cache = TransformerLensKeyValueCache.init_cache(cfg, cfg.device, len(chunk))
            else:
                prefix, mask, cache = common.extend(model, prompts, freeze=False)
            model(prefix, attention_mask=mask, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
            cache.freeze()
            # answers are left-padded too, so position -1 is each row's last token
            if prefix.numel() <= ONE_ANSWER_PASS_TOKENS:
                # both sides in one pass over a twice-repeated cache: rows [0, b) positive, then
                # [b, 2b) negative; a short cache is cheap to copy, a pass is not
                answers = [pairs[i][side][shared[i] :] for side in (0, 1) for i in chunk]
                tokens, mask = left_pad(answers, pad, cfg.device)
                model(
                    tokens,
                    attention_mask=mask,
                    past_kv_cache=repeat_cache(cache, 2),
                    stop_at_layer=cfg.n_layers,
                )
                acts, b = read(), len(chunk)
                yield (
                    chunk,
                    {s: a[:b] for s, a in acts.items()},
                    {s: a[b:] for s, a in acts.items()},
                )
                continue
            sides = []
            for side in (0, 1):  # long prompts: no copy of the cache, one pass per side
                answers = [pairs[i][side][shared[i] :] for i in chunk]
                tokens, mask = left_pad(answers, pad, cfg.device)
                model(tokens, attention_mask=mask, past_kv_cache=cache, stop_at_layer=cfg.n_layers)
                sides.append(read())
            yield chunk, sides[0], sides[1]


def _check_finite(acts: Tensor, site: str) -> None:
    bad = ~torch.isfinite(acts)
    if bad.any():
        layers = sorted({int(x) for x in bad.nonzero()[:, 1].tolist()})
        raise FloatingPointError(
            f"Non-finite activations at site {site!r} ({SITES[site]}) in layers {layers}; "
            "collect in float32 (load_model(dtype='float32'))."
        )


@overload
def collect_activations(
    model: HookedTransformer,
    texts: Sequence[str] | Sequence[Sequence[int]],
    site: SiteName = ...,
    *,
    batch_size: int = ...,
    progress: bool = ...,
) -> Float[Tensor, "text layer *unit"]: ...


@overload
def collect_activations(
    model: HookedTransformer,
    texts: Sequence[str] | Sequence[Sequence[int]],
    site: SiteNames,
    *,
    batch_size: int = ...,
    progress: bool = ...,
) -> dict[str, Float[Tensor, "text layer *unit"]]: ...


def collect_activations(
    model: HookedTransformer,
    texts: Sequence[str] | Sequence[Sequence[int]],
    site: SiteName | Sequence[SiteName] = "head",
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> Tensor | dict[str, Tensor]:
    """Last-token activations of each text, `[text, layer, *unit]` (a dict for several sites).

    Texts are strings (tokenized with the model's BOS convention) or lists of token ids.
    """
    sites = _sites(site, model)
    seqs = [prompt_ids(model, t) if isinstance(t, str) else list(t) for t in texts]
    if not seqs:
        raise ValueError("collect_activations() got no texts")
    seqs = fit_contexts(seqs, model.cfg.n_ctx)
    out = {
        s: torch.empty((len(seqs), model.cfg.n_layers, *unit_shape(s, model.cfg))) for s in sites
    }
    for chunk, acts in _last_token_batches(model, seqs, sites, batch_size, progress=progress):
        for s in sites:
            _check_finite(acts[s], s)
            out[s][chunk.start : chunk.stop] = acts[s].float().cpu()
    return out[sites[0]] if isinstance(site, str) else out


@overload
def collect_differences(
    model: HookedTransformer,
    examples: Sequence[Example],
    site: SiteName = ...,
    *,
    batch_size: int = ...,
    keep_pairs: bool = ...,
    keep_sides: bool = ...,
    seed: int = ...,
    task: str | None = ...,
    share_prompts: bool | None = ...,
    progress: bool = ...,
    pair_format: PairFormat = ...,
) -> Differences: ...


@overload
def collect_differences(
    model: HookedTransformer,
    examples: Sequence[Example],
    site: SiteNames,
    *,
    batch_size: int = ...,
    keep_pairs: bool = ...,
    keep_sides: bool = ...,
    seed: int = ...,
    task: str | None = ...,
    share_prompts: bool | None = ...,
    progress: bool = ...,
    pair_format: PairFormat = ...,
) -> dict[str, Differences]: ...


def collect_differences(
    model: HookedTransformer,
    examples: Sequence[Example],
    site: SiteName | Sequence[SiteName] = "head",
    *,
    batch_size: int = 16,
    keep_pairs: bool = False,
    keep_sides: bool = False,
    seed: int = 0,
    task: str | None = None,
    share_prompts: bool | None = None,
    progress: bool = True,
    pair_format: PairFormat = "template",
) -> Differences | dict[str, Differences]:
    """Paired last-token differences at one site (or a dict for several sites, one pass).

    Each example gives the pair (prompt + answer, prompt + wrong); the activation is read at the
    last token, i.e. the answer's last token, as both papers do. Pairs are sorted by length so
    batches carry little padding; the statistics do not depend on the order.

    Args:
        examples: the contrastive pairs, usually `task.train`.
        site: "head", "neuron", "mlp_out", "resid" (aliases: "attention", "ffn", "hidden"), or a
            list of them, collected in the same forward passes.
        batch_size: pairs per forward pass (each pass runs 2 * batch_size texts).
        keep_pairs: also keep every pair's difference (for subsampling pairs, bootstraps).
        keep_sides: also keep every pair's positive and negative activation (`positive`,
            `negative`: twice the memory of `keep_pairs`; ITI's probes train on them).
        seed: picks the wrong answer when an example has several.
        share_prompts: run each pair's prompt once (KV cache) and then each side's answer,
            instead of both whole texts; the same numbers. Default: on a CPU, where it halves
            the arithmetic; not on an accelerator, where three short passes cost more kernel
            launches than one pass of whole texts saves.
        pair_format: "template" (prompt ids + answer ids), or the texts as SADI's ("sadi":
            stripped prompt, one space, answer) or AUSteer's ("austeer": no separator) released
            code writes them (`pair_text`).
    """
    sites = _sites(site, model)
    if not examples:
        raise ValueError("collect_differences() got no examples (is the split empty?)")
    pairs = contrastive_ids(model, examples, seed=seed, pair_format=pair_format)
    n_identical = sum(pos == neg for pos, neg in pairs)
    flags = torch.tensor([(pos == neg, pos[-1] == neg[-1]) for pos, neg in pairs], dtype=torch.bool)
    n_same_last = int(flags[:, 1].sum())
    if n_identical:
        warnings.warn(
            f"{n_identical} of {len(pairs)} pairs have identical positive and negative token "
            "sequences; their difference is zero (they still count in the means).",
            stacklevel=2,
        )
    if n_same_last > n_identical:
        warnings.warn(
            f"{n_same_last - n_identical} of {len(pairs)} pairs end in the same token for the "
            "correct and the wrong answer (multi-token answers sharing a last token); their "
            "last-token difference reflects only the earlier answer tokens.",
            stacklevel=2,
        )
    order = sorted(range(len(pairs)), key=lambda i: -max(len(pairs[i][0]), len(pairs[i][1])))
    cfg, n = model.cfg, len(pairs)
    shapes = {s: (cfg.n_layers, *unit_shape(s, cfg)) for s in sites}
    total = {s: torch.zeros(shapes[s], dtype=torch.float64) for s in sites}
    total_sq = {s: torch.zeros(shapes[s], dtype=torch.float64) for s in sites}
    n_pos = {s: torch.zeros(shapes[s], dtype=torch.long) for s in sites}
    n_neg = {s: torch.zeros(shapes[s], dtype=torch.long) for s in sites}
    kept = {s: torch.empty((n, *shapes[s])) for s in sites} if keep_pairs else {}
    sides = {s: [torch.empty((n, *shapes[s])) for _ in "pn"] for s in sites} if keep_sides else {}
    ordered = [pairs[i] for i in order]
    if share_prompts is None:
        share_prompts = KV_CACHE and torch.device(model.cfg.device or "cpu").type == "cpu"
    elif share_prompts and not KV_CACHE:
        raise ValueError("share_prompts=True needs TransformerLens 3.9's KV cache (not the bridge)")
    pair_batches = _pair_batches(
        model, ordered, sites, batch_size, share_prompts=share_prompts, progress=progress
    )
    # closing(): hooks inside the generator go the moment an error (non-finite values) leaves
    with closing(pair_batches):
        for chunk, pos, neg in pair_batches:
            rows = [order[i] for i in chunk]
            for s in sites:
                _check_finite(pos[s], s)
                _check_finite(neg[s], s)
                diff = pos[s].float() - neg[s].float()
                total[s] += diff.sum(0).double().cpu()
                total_sq[s] += diff.pow(2).sum(0).double().cpu()
                n_pos[s] += (diff > 0).sum(0).cpu()
                n_neg[s] += (diff < 0).sum(0).cpu()
                if keep_pairs:
                    kept[s][rows] = diff.cpu()
                if keep_sides:
                    sides[s][0][rows] = pos[s].float().cpu()
                    sides[s][1][rows] = neg[s].float().cpu()
    result = {
        s: Differences(
            site=s,
            model_name=str(cfg.model_name),
            fingerprint=model_fingerprint(model),
            n_pairs=n,
            mean=(total[s] / n).float(),
            n_pos=n_pos[s],
            n_neg=n_neg[s],
            sq_mean=(total_sq[s] / n).float(),
            pairs=kept.get(s),
            task=task,
            n_identical=n_identical,
            n_same_last=n_same_last,
            pair_flags=flags if keep_pairs else None,
            positive=sides[s][0] if keep_sides else None,
            negative=sides[s][1] if keep_sides else None,
            pair_format=pair_format,
        )
        for s in sites
    }
    return result[sites[0]] if isinstance(site, str) else result


def _sites(site: SiteName | Sequence[SiteName], model: HookedTransformer) -> list[str]:
    names = [site] if isinstance(site, str) else list(site)
    if not names:
        raise ValueError("No site given; valid sites: " + ", ".join(SITES))
    resolved = [resolve_site(s) for s in names]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"Duplicate sites in {names}")
    for name in resolved:
        check_site(model, name)
    return resolved
