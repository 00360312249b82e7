"""Clamp steering: SADI as its authors' code runs it.

The released SADI code caches the site at the last prompt token from a clean (unsteered) pass
and, in the steered pass, overwrites that position of the site in *every* layer with the cached
value, the selected units multiplied by the strength (Wang et al. 2025, `steering.py`). So
units that are not selected are frozen at their clean values, and selected ones are set from
clean values rather than scaled live.

Here a clamp needs the clean values of every layer before the steered pass reaches layer 0, so
`clean_prepass` wraps the model's `forward` (TransformerLens has no hook before a forward pass,
and `generate` calls `forward` directly): each steered call first runs the same call with every
steerlens hook passing through, capturing the site at the last prompt token, then runs the call
itself, whose hooks overwrite that position. A pass extending an unfrozen KV cache (a generation
step) is left alone, as in the released code; a frozen cache (a shared prompt prefix) is read,
never written, so the clean pass can use it too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ._backend import HookedTransformer
from .sites import hook_name, mlp_bias, read_hook_name, resolve_site, site_reader

Hook = tuple[str, Callable[[Tensor, object], Tensor | None]]
_CLEAN_PASS: ContextVar[bool] = ContextVar("steerlens_clean_pass", default=False)


@dataclass
class _Memo:
    """Clean values by input. Objects identified by `id` (a KV cache) are kept alive in `keep`,
    so that no later object can take a stored id while the memo lives."""

    entries: dict[Any, dict[int, Tensor]] = field(default_factory=dict)
    keep: list[object] = field(default_factory=list)


_MEMO: ContextVar[_Memo | None] = ContextVar("steerlens_clean_memo", default=None)


def in_clean_pass() -> bool:
    """True inside a clamp's clean pre-pass, where every steerlens hook passes through."""
    return _CLEAN_PASS.get()


@contextmanager
def reuse_clean_passes() -> Iterator[None]:
    """Within this block a clamp reuses the clean pass of an input it has seen (same site, same
    tokens or residual stream, same cache object and column): a sweep's cells share them."""
    token = _MEMO.set(_Memo())
    try:
        yield
    finally:
        _MEMO.reset(token)


@dataclass
class ClampState:
    """One clamp's per-pass state: whether this pass is clamped, where, and the clean values."""

    site: str
    column: Callable[[], int | None]
    active: bool = False
    at: int = -1
    clean: dict[int, Tensor] = field(default_factory=dict)
    linear: dict[int, Tensor] = field(default_factory=dict)


def _gated(model: HookedTransformer, site: str) -> bool:
    return resolve_site(site) == "gate" and bool(model.cfg.gated_mlp)


def clamp_hooks(
    model: HookedTransformer, site: str, deltas: dict[int, Tensor]
) -> tuple[list[Hook], ClampState]:
    """Capture and overwrite hooks at `site` in every layer, and their shared state.

    `deltas[layer]` is `strength * weight` per unit (a `unit_shape` tensor) for layers with
    selected units; the site at the clamped position becomes `clean + delta * clean`. At site
    `gate` of a gated MLP the clamped value is the activation function's output, multiplied by
    the live `hook_pre_linear` as the MLP does (`hook_post = act(gate) * linear + b_in`).
    """
    state = ClampState(site=site, column=lambda: None)
    gated = _gated(model, site)
    hooks: list[Hook] = []

    def capture(layer: int) -> Callable[[Tensor, object], None]:
        read = site_reader(model, site, layer)

        def hook(act: Tensor, hook: object) -> None:
            if _CLEAN_PASS.get() and state.active:
                state.clean[layer] = read(act[:, state.at]).detach().clone()

        return hook

    def keep_linear(layer: int) -> Callable[[Tensor, object], None]:
        def hook(act: Tensor, hook: object) -> None:
            if not _CLEAN_PASS.get() and state.active:
                state.linear[layer] = act[:, state.at]

        return hook

    def overwrite(layer: int) -> Callable[[Tensor, object], Tensor]:
        delta = deltas.get(layer)
        b_in = mlp_bias(model, layer) if gated else None

        def hook(act: Tensor, hook: object) -> Tensor:
            if _CLEAN_PASS.get() or not state.active:
                return act
            if layer not in state.clean:  # a pass started above this layer: nothing to clamp
                return act
            value = state.clean[layer]
            if delta is not None:
                value = value + delta * value
            if b_in is not None:
                value = value * state.linear[layer] + b_in
            out = act.clone()
            out[:, state.at] = value.to(act.dtype)
            return out

        return hook

    for layer in range(model.cfg.n_layers):
        hooks.append((read_hook_name(site, layer), capture(layer)))
        if gated:
            hooks.append((f"blocks.{layer}.mlp.hook_pre_linear", keep_linear(layer)))
        hooks.append((hook_name(site, layer), overwrite(layer)))
    return hooks, state


def _digest(value: object, keep: list[object]) -> object:
    if isinstance(value, Tensor):
        data = value.detach().cpu().contiguous().reshape(-1)
        raw = data.view(torch.uint8) if data.numel() else data  # any dtype, bfloat16 included
        return (
            tuple(value.shape),
            str(value.dtype),
            hashlib.blake2b(raw.numpy().tobytes()).digest(),
        )
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    keep.append(value)  # a KV cache: identified by the object, kept alive while the memo lives
    return id(value)


def _extends_cache(kwargs: dict[str, Any]) -> bool:
    cache = kwargs.get("past_kv_cache")
    if cache is None or cache.frozen:
        return False
    return bool(cache.entries[0].past_keys.shape[1] > 0)


def prepass_active(model: HookedTransformer) -> bool:
    """Whether a clamp's clean pre-pass wraps `model.forward` now (`clean_prepass`)."""
    return bool(getattr(vars(model).get("forward"), "steerlens_clean_prepass", False))


@contextmanager
def clean_prepass(model: HookedTransformer, states: Sequence[ClampState]) -> Iterator[None]:
    """Within this block, every forward call of `model` first runs clean for `states`."""
    if not states:
        yield
        return
    if len({s.site for s in states}) != len(states):
        raise ValueError("At most one clamp mask per site can steer at once (each clamps the site)")
    had_own = "forward" in vars(model)
    inner = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if _CLEAN_PASS.get():
            return inner(*args, **kwargs)
        active = not _extends_cache(kwargs)
        for s in states:
            s.active, s.at = active, _column(s)
            s.clean, s.linear = {}, {}
        if active:
            _run_clean(inner, states, args, kwargs)
        return inner(*args, **kwargs)

    forward.steerlens_clean_prepass = True  # type: ignore[attr-defined]
    model.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        if had_own:
            model.forward = inner  # type: ignore[method-assign]
        else:
            del model.forward


def _column(state: ClampState) -> int:
    column = state.column()
    return -1 if column is None else column


def _run_clean(
    forward: Callable[..., Any],
    states: Sequence[ClampState],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    memo = _MEMO.get()
    key = None
    if memo is not None:
        parts = [_digest(a, memo.keep) for a in args]
        parts += [(k, _digest(v, memo.keep)) for k, v in sorted(kwargs.items())]
        key = (tuple(parts), states[0].at)
        if all((key, s.site) in memo.entries for s in states):
            for s in states:
                s.clean = memo.entries[(key, s.site)]
            return
    clean_kwargs = dict(kwargs)
    if kwargs.get("past_kv_cache") is not None and not kwargs["past_kv_cache"].frozen:
        clean_kwargs["past_kv_cache"] = None  # an empty cache: the clean pass must not fill it
    token = _CLEAN_PASS.set(True)
    try:
        with torch.no_grad():
            forward(*args, **clean_kwargs)
    finally:
        _CLEAN_PASS.reset(token)
    if memo is not None:
        for s in states:
            memo.entries[(key, s.site)] = s.clean
