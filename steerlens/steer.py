"""Steering: turn masks into TransformerLens forward hooks and apply them in a context manager.

`steering_hooks` is pure (it registers nothing); `steer` validates, then runs
`model.hooks(fwd_hooks=...)`, which removes the hooks on any exit, exceptions and
KeyboardInterrupt included. Nested `steer` contexts compose: the inner hooks run after the outer
ones at the same hook point, and leaving the inner context removes only its own hooks.

Where a mask steers:
- `positions="all"` (AUSteer, CAA, ITI): every position of every forward pass, so prompt tokens
  and each generated token.
- `positions="last"` (SADI): the last prompt token. In a forward pass without a KV cache (a plain
  `model(tokens)` call, `run_with_cache`, or the prefill of `model.generate`) that is position -1
  of every row (batches are left-padded). Passes that extend a KV cache (generation steps) are
  not steered unless `every_generated=True`. A teacher-forced pass over prompt + answer can name
  the prompt's last column with `prompt_end(column)`. Use `generate` with its default KV cache:
  without one, every step would look like a fresh prompt.
- `positions="each_last"` (ITI as released): the last position of every forward pass, so the last
  prompt token and each generated token (`"last"` with `every_generated=True`).
- `positions="from"` (CAA as released): from the last prompt token on: in a fresh pass the last
  column (or, with `prompt_end(column)`, that column and every answer column after it), and every
  position of a pass that extends a KV cache (each generated token).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import Tensor

from ._backend import HookedTransformer
from ._clamp import ClampState, clamp_hooks, clean_prepass, in_clean_pass
from ._prefix import continues_prompt, in_answers, in_prefix
from .mask import POSITIONS, Mask
from .models import model_fingerprint
from .sites import check_site, hook_name, mlp_bias, unit_shape

Hook = tuple[str, Callable[[Tensor, object], Tensor | None]]
_PROMPT_END: ContextVar[int | None] = ContextVar("steerlens_prompt_end", default=None)
_ABSURD = 1e4


@contextmanager
def prompt_end(column: int) -> Iterator[None]:
    """Within this block, last-prompt-token hooks steer `column` of every forward pass.

    For teacher-forced passes over `prompt + answer` whose prompts all end at `column`
    (left-padded prompts followed by right-padded answers), as `evaluate` builds them.
    """
    token = _PROMPT_END.set(column)
    try:
        yield
    finally:
        _PROMPT_END.reset(token)


@dataclass
class _PassState:
    """Whether the current forward pass starts fresh (no KV cache): set by a probe hook."""

    fresh: bool = True


def _probe(state: _PassState) -> Callable[[Tensor, object], None]:
    def hook(scores: Tensor, hook: object) -> None:  # scores: [batch, head, query, key]
        state.fresh = scores.shape[-1] == scores.shape[-2]

    return hook


def _dense(
    mask: Mask, layer: int, values: Tensor, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """A `unit_shape` tensor holding `values` ([k_layer, width]) at the layer's units, 0 elsewhere."""
    rows = (mask.layers == layer).nonzero().flatten()
    dense = torch.zeros(mask.units_per_layer, mask.unit_width, dtype=torch.float32)
    dense[mask.indices[rows]] = values[rows].float()
    return dense.reshape(mask.unit_shape).to(device=device, dtype=dtype)


def _unit_values(mask: Mask) -> Tensor:
    """`[k, width]` per selected unit: its weight ("scale") or weight times vector ("add")."""
    if mask.operation in ("scale", "clamp"):
        return mask.weights.unsqueeze(-1).expand(mask.k, mask.unit_width)
    assert mask.vectors is not None
    return mask.weights.unsqueeze(-1) * mask.vectors


def steering_hooks(
    mask: Mask,
    strength: float,
    *,
    positions: str | None = None,
    every_generated: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[Hook]:
    """Forward hooks that apply `mask` with `strength` (registers nothing).

    "scale" masks compute `a + strength * (w * a)` with `w` the per-unit weights (1 for SADI,
    AUSteer's signed consistency), so SADI's delta and AUSteer's alpha are both `strength`.
    "add" masks compute `a + strength * (w * v)` with the mask's vectors `v`.
    """
    where = positions or mask.positions
    if where not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {where!r}")
    if mask.operation == "clamp":
        raise ValueError(
            "A 'clamp' mask needs a clean pre-pass of the model: steer it with steer()"
        )
    dev = torch.device(device)
    values = _unit_values(mask)
    state = _PassState()
    hooks: list[Hook] = []
    for layer in sorted(set(mask.layers.tolist())):
        delta = strength * _dense(mask, layer, values, dev, dtype)
        fn = _scale_hook(delta) if mask.operation == "scale" else _add_hook(delta)
        if where == "all":
            hooks.append((hook_name(mask.site, layer), _full(fn)))
        elif where == "from":
            hooks.append((f"blocks.{layer}.attn.hook_attn_scores", _probe(state)))
            hooks.append((hook_name(mask.site, layer), _from_prompt_end(fn, state)))
        else:
            each = every_generated or where == "each_last"
            hooks.append((f"blocks.{layer}.attn.hook_attn_scores", _probe(state)))
            hooks.append((hook_name(mask.site, layer), _at_last(fn, state, each)))
    return hooks


def packed_steering_hooks(
    cells: Sequence[tuple[Mask, float]],
    rows: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[Hook]:
    """Hooks that steer a batch holding several settings at once, at every position.

    The batch is `len(cells)` blocks of `rows` rows; block `g` is steered with `cells[g]`
    (a mask and its strength) exactly as `steering_hooks` would steer it alone, and rows of cells
    that do not touch a hook point pass through it unchanged. Sweeps use this to run many settings
    in one forward pass (worth it where passes are bound by per-operation overhead, as on GPUs).
    """
    n = len(cells)
    if any(mask.operation == "clamp" for mask, _ in cells):
        raise ValueError("A 'clamp' mask needs its own clean pre-pass: steer it with steer()")
    dev = torch.device(device)
    per_hook: dict[str, dict[str, Tensor]] = {}
    for g, (mask, strength) in enumerate(cells):
        values = _unit_values(mask)
        for layer in sorted(set(mask.layers.tolist())):
            delta = strength * _dense(mask, layer, values, dev, dtype)
            slot = per_hook.setdefault(hook_name(mask.site, layer), {})
            stacked = slot.setdefault(
                mask.operation, torch.zeros(n, *delta.shape, device=dev, dtype=dtype)
            )
            stacked[g] = delta
    return [(name, _packed_hook(slot, n, rows)) for name, slot in per_hook.items()]


def _packed_hook(slot: dict[str, Tensor], n: int, rows: int) -> Callable[[Tensor, object], Tensor]:
    scale, add = slot.get("scale"), slot.get("add")

    def hook(act: Tensor, hook: object) -> Tensor:
        if in_clean_pass():
            return act
        blocks = act.unflatten(0, (n, rows))  # [cell, row, pos, *unit]
        out = blocks
        if scale is not None:
            out = out + scale[:, None, None] * blocks
        if add is not None:
            out = out + add[:, None, None]
        return out.flatten(0, 1)

    return hook


def _scale_hook(delta: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda act: act + delta * act


def _add_hook(delta: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda act: act + delta


def _at_last(
    fn: Callable[[Tensor], Tensor], state: _PassState, every_generated: bool
) -> Callable[[Tensor, object], Tensor]:
    def hook(act: Tensor, hook: object) -> Tensor:
        column = _PROMPT_END.get()
        if in_clean_pass() or in_prefix() or in_answers():
            return act
        if column is None:
            if not (state.fresh or every_generated or continues_prompt()):
                return act
            column = -1
        out = act.clone()  # never edit a tensor another hook (a cache) may hold
        out[:, column] = fn(act[:, column])
        return out

    return hook


def _from_prompt_end(
    fn: Callable[[Tensor], Tensor], state: _PassState
) -> Callable[[Tensor, object], Tensor]:
    def hook(act: Tensor, hook: object) -> Tensor:
        column = _PROMPT_END.get()
        if in_clean_pass() or in_prefix():
            return act
        if in_answers():
            return fn(act)
        if column is None:
            if not (state.fresh or continues_prompt()):
                return fn(act)  # a generation step: every new position is after the prompt
            column = act.shape[1] - 1
        out = act.clone()
        out[:, column:] = fn(act[:, column:])
        return out

    return hook


def _full(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor, object], Tensor]:
    return lambda act, hook: act if in_clean_pass() else fn(act)


def check_mask(model: HookedTransformer, mask: Mask) -> None:
    """Raise if `mask` was built for a model of another shape (or another model)."""
    check_site(model, mask.site)
    _check_gate_bias(model, mask)
    cfg = model.cfg
    expected = unit_shape(mask.site, cfg)
    if (mask.n_layers, mask.unit_shape) != (cfg.n_layers, expected):
        raise ValueError(
            f"Mask for model {mask.model_name!r} ({mask.n_layers} layers, unit shape "
            f"{mask.unit_shape}) does not fit this model {cfg.model_name!r} ({cfg.n_layers} "
            f"layers, unit shape {expected}); rebuild the mask for this model."
        )
    if mask.fingerprint != model_fingerprint(model):
        raise ValueError(
            f"Mask was built for model {mask.model_name!r} (fingerprint {mask.fingerprint}), "
            f"not this {cfg.model_name!r} ({model_fingerprint(model)}); rebuild the mask."
        )


def _check_gate_bias(model: HookedTransformer, mask: Mask) -> None:
    """Site `gate` is steered at `hook_post = act(gate) * linear + b_in`: scaling it scales the
    gate only when `b_in` is 0 (a clamp rebuilds `hook_post` and is exact either way)."""
    if mask.site != "gate" or mask.operation == "clamp" or not model.cfg.gated_mlp:
        return
    layers = sorted(set(mask.layers.tolist()))
    if any(bool(mlp_bias(model, layer).abs().max() > 0) for layer in layers):
        raise ValueError(
            "Site 'gate' is steered at mlp.hook_post, which equals scaling the gate only when the "
            "MLP has no bias b_in, and this model's has one: use site 'neuron', or "
            "sadi_mask(..., mode='released') (a clamp, exact with a bias)"
        )


def _check_strength(mask: Mask, strength: float) -> None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise TypeError(f"strength must be a number, got {type(strength).__name__}")
    if not math.isfinite(strength):
        raise ValueError(f"strength must be finite, got {strength}")
    if abs(strength) > _ABSURD:
        warnings.warn(f"strength {strength} is far outside the papers' ranges", stacklevel=4)
    if mask.operation in ("scale", "clamp"):
        flipped = int((1 + strength * mask.weights < 0).sum())
        if flipped:
            warnings.warn(
                f"strength {strength} flips the sign of {flipped} of {mask.k} units "
                "(factor 1 + strength * weight < 0); AUSteer's formula allows this.",
                stacklevel=4,
            )


@contextmanager
def steer(
    model: HookedTransformer,
    mask: Mask | Sequence[Mask],
    strength: float | Sequence[float],
    *,
    positions: str | None = None,
    every_generated: bool = False,
) -> Iterator[HookedTransformer]:
    """Steer `model` with one or several masks inside a `with` block.

    Args:
        mask: a `Mask`, or a list of masks applied together.
        strength: SADI's delta / AUSteer's alpha / an additive coefficient; one per mask for lists.
            Strength 0 leaves every logit unchanged.
        positions: override the mask's own positions ("last" prompt token, "all", "from" the
            prompt's end on, or "each_last": the last position of every pass).
        every_generated: with "last", also steer each token generated through the KV cache.

    Example:
        >>> with steer(model, mask, strength=2.0):  # doctest: +SKIP
        ...     logits = model(tokens)
    """
    masks = [mask] if isinstance(mask, Mask) else list(mask)
    strengths = [strength] * len(masks) if not isinstance(strength, Sequence) else list(strength)
    if len(strengths) != len(masks):
        raise ValueError(f"Got {len(masks)} masks but {len(strengths)} strengths")
    hooks: list[Hook] = []
    clamps: list[ClampState] = []
    for m, s in zip(masks, strengths, strict=True):
        if not isinstance(m, Mask):
            raise TypeError(f"steer() takes Mask objects, got {type(m).__name__}")
        check_mask(model, m)
        _check_strength(m, s)
        if m.operation == "clamp":
            if every_generated or positions not in (None, "last"):
                raise ValueError(
                    "A 'clamp' mask steers only the last prompt token, as SADI's released code "
                    "does: drop positions= and every_generated="
                )
            clamped, state = _clamp(model, m, float(s))
            hooks += clamped
            clamps.append(state)
            continue
        hooks += steering_hooks(
            m,
            float(s),
            positions=positions,
            every_generated=every_generated,
            device=model.cfg.device or "cpu",
            dtype=model.cfg.dtype,
        )
    with clean_prepass(model, clamps), model.hooks(fwd_hooks=list(hooks)):
        yield model


def _clamp(model: HookedTransformer, mask: Mask, strength: float) -> tuple[list[Hook], ClampState]:
    """Hooks and state of a clamp mask (see `steerlens._clamp`)."""
    dev, dtype = torch.device(model.cfg.device or "cpu"), model.cfg.dtype
    values = _unit_values(mask)
    deltas = {
        layer: strength * _dense(mask, layer, values, dev, dtype)
        for layer in sorted(set(mask.layers.tolist()))
    }
    hooks, state = clamp_hooks(model, mask.site, deltas)
    state.column = _PROMPT_END.get
    return hooks, state
