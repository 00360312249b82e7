"""Reliability (issue 6): bad inputs and faults give clear, early errors; nothing leaks; results repeat.

Each test here guards one protection and fails when that protection is removed (docs/reliability.md
lists them with the message a user sees). Tests of protections that already had one elsewhere
live next to the code they test (test_tasks, test_mask, test_steer, test_collect, ...).

Fuzzers run with fixed `max_examples` (see the constants below) so their case counts can be quoted.
"""

from __future__ import annotations

import importlib
import json
import random
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from steerlens import (
    Example,
    Mask,
    austeer_mask,
    collect_activations,
    collect_differences,
    encode_items,
    evaluate,
    fixed_vector_mask,
    random_mask,
    sadi_mask,
    steer,
)
from steerlens.cli import main as cli_main
from steerlens.evaluate import EncodedItems, score_first_tokens
from steerlens.tasks import load_jsonl
from steerlens.tokens import answer_ids, fit_contexts, prompt_ids
from tests import reference as ref
from tests.tiny import tiny_model

run_mod = importlib.import_module("steerlens.experiments.main_job")
io_mod = importlib.import_module("steerlens._io")
mask_mod = importlib.import_module("steerlens.mask")

MASK_FUZZ_EXAMPLES = 400  # random byte corruptions of a valid mask file
HEADER_FUZZ_EXAMPLES = 40  # per header field (11 fields): random JSON values in one field
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

pytestmark = pytest.mark.filterwarnings("ignore:strength .* flips the sign")


def no_hooks_left(model) -> bool:
    return all(
        not hp.fwd_hooks and not hp.bwd_hooks and not hp._forward_hooks and not hp._backward_hooks
        for hp in model.hook_dict.values()
    )


def ids_of(model, text: str) -> torch.Tensor:
    return torch.tensor([prompt_ids(model, text)])


def messages(caught) -> list[str]:
    return [str(w.message) for w in caught]


# ================================================================================================
# 1. Inputs
# ================================================================================================


def test_same_last_token_pairs_warn_and_count(model) -> None:
    """Multi-token answers ending in the same token warn once and are counted in n_same_last."""
    exs = [
        Example("abc:", " xb", (" yb",)),  # both answers end in "b": last-token difference is
        Example("defg:", " Y", (" N",)),  # only the earlier answer tokens' effect
        Example("hi:", " qz", (" rz",)),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diffs = collect_differences(model, exs, "resid", keep_pairs=True, progress=False)
    same = [m for m in messages(caught) if "end in the same token" in m]
    assert len(same) == 1 and same[0].startswith("2 of 3 pairs"), messages(caught)
    assert diffs.n_same_last == 2 and diffs.n_identical == 0
    assert diffs.pair_flags[:, 1].tolist() == [True, False, True]


def test_fit_contexts_warns_once_and_keeps_the_end() -> None:
    """Many over-long sequences: one warning for the lot, each keeps its last tokens."""
    seqs = [list(range(n)) for n in (5, 70, 80, 10, 100)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit_contexts(seqs, 64, what="prompt")
    assert len(caught) == 1, messages(caught)
    text = str(caught[0].message)
    assert "3 of 5 prompts exceed the model's context of 64 tokens" in text
    assert "longest has 100" in text and "truncated from the left" in text
    assert [len(s) for s in out] == [5, 64, 64, 10, 64]
    assert all(o[-1] == s[-1] for o, s in zip(out, seqs, strict=True))  # the answer survives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_contexts(seqs[:1], 64) == seqs[:1]  # nothing to truncate: silent
    with pytest.warns(UserWarning, match=r"1 of 2 texts exceed the room .*\(as few as 4 tokens\)"):
        rooms = fit_contexts([list(range(10))] * 2, [4, 20])
    assert rooms == [list(range(6, 10)), list(range(10))]


@pytest.mark.parametrize("room", [0, -3])
def test_no_room_for_the_prompt_is_a_clear_error(model, room: int) -> None:
    """An answer option as long as the context leaves no room: a ValueError, not an empty prompt."""
    with pytest.raises(ValueError, match="No room for a prompt"):
        fit_contexts([[1, 2, 3]], room, what="prompt")
    with pytest.raises(ValueError, match="No room for a prompt"):
        fit_contexts([[1, 2, 3]], [room], what="prompt")
    long_answer = Example("p:", " " + "y" * model.cfg.n_ctx, (" no",))
    with pytest.raises(ValueError, match="No room for a prompt"):
        evaluate(model, [long_answer], progress=False)


def _long_examples(n: int, n_ctx: int) -> list[Example]:
    return [
        Example(
            "z" * (n_ctx + 10 * i) + f"{i}:", " Y" if i % 2 else " N", (" N" if i % 2 else " Y",)
        )
        for i in range(n)
    ]


def test_collect_warns_once_per_call_for_long_texts(model) -> None:
    """Five over-long pairs give one truncation warning per collect call, not one per text."""
    exs = _long_examples(5, model.cfg.n_ctx)
    for _ in range(2):  # and again on the next call
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            collect_differences(model, exs, "head", progress=False)
        cut = [m for m in messages(caught) if "truncated from the left" in m]
        assert len(cut) == 1, cut


def test_evaluate_warns_once_per_call_for_long_prompts(model) -> None:
    """Five over-long prompts give one truncation warning per evaluate / collect_activations call."""
    exs = _long_examples(5, model.cfg.n_ctx)
    for call in (
        lambda: evaluate(model, exs, progress=False),
        lambda: encode_items(model, exs),
        lambda: collect_activations(model, [ex.prompt for ex in exs], "resid", progress=False),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
        cut = [m for m in messages(caught) if "truncated from the left" in m]
        assert len(cut) == 1, cut


def test_truncation_keeps_the_answer_token(model) -> None:
    """Over-long contrastive texts keep their answer token last; over-long prompts keep their end
    and leave room for every option."""
    n_ctx = model.cfg.n_ctx
    ex = Example("q" * 100 + "tail:", " Y", (" N",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diffs = collect_differences(model, [ex], "mlp_out", keep_pairs=True, progress=False)
        items = encode_items(model, [ex])
    pos = (prompt_ids(model, ex.prompt) + answer_ids(model, ex.answer))[-n_ctx:]
    neg = (prompt_ids(model, ex.prompt) + answer_ids(model, ex.wrong[0]))[-n_ctx:]
    expected = ref.last_token_acts(model, pos, "mlp_out") - ref.last_token_acts(
        model, neg, "mlp_out"
    )
    torch.testing.assert_close(diffs.pairs[0], expected, atol=1e-5, rtol=0)
    longest = max(len(answer_ids(model, o)) for o in ex.options)
    assert items.prompts[0] == prompt_ids(model, ex.prompt)[-(n_ctx - longest) :]
    assert items.prompts[0][-5:] == answer_ids(model, "tail:")


# ---- multi-token answers, non-ASCII and very long text (tiny model: n_ctx 64, byte tokens) ----

UNICODE = [
    Example("Ünïcødé — 日本語 «quote» 🙂:", " ja 🙂", (" nein", " ✓ sí")),
    Example("Straße → Ελληνικά:", " αβ", (" שלום",)),
    Example("emoji 👩‍👩‍👧 test:", " 👍", (" ✗👎",)),
    Example("ß" * 60 + " very long non-ASCII prompt:", " ok", (" ko", " nö")),
    Example("x" * 200 + ":", " Y", (" N",)),
]


def test_non_ascii_and_long_text_through_collect(model) -> None:
    """Non-ASCII, multi-token and over-long texts give the reference differences of the
    (left-truncated) token ids, one wrong answer drawn per example from the seed."""
    n_ctx = model.cfg.n_ctx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diffs = collect_differences(model, UNICODE, "head", keep_pairs=True, seed=0, progress=False)
        acts = collect_activations(model, [ex.prompt for ex in UNICODE], "neuron", progress=False)
    rng = random.Random(0)  # collect draws wrong answers like this
    for i, ex in enumerate(UNICODE):
        wrong = ex.wrong[0] if len(ex.wrong) == 1 else rng.choice(ex.wrong)
        p = prompt_ids(model, ex.prompt)
        pos = (p + answer_ids(model, ex.answer))[-n_ctx:]
        neg = (p + answer_ids(model, wrong))[-n_ctx:]
        expected = ref.last_token_acts(model, pos, "head") - ref.last_token_acts(model, neg, "head")
        torch.testing.assert_close(diffs.pairs[i], expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(
            acts[i], ref.last_token_acts(model, p[-n_ctx:], "neuron"), atol=1e-5, rtol=0
        )
    assert bool(torch.isfinite(diffs.mean).all())


def test_non_ascii_and_long_text_through_evaluate(model) -> None:
    """Evaluation of the same items equals one-at-a-time reference scores of the truncated ids."""
    n_ctx = model.cfg.n_ctx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(model, UNICODE, batch_size=2, progress=False)
    assert sum(len(answer_ids(model, ex.answer)) > 1 for ex in UNICODE) >= 4  # multi-token
    for i, ex in enumerate(UNICODE):
        opts = [answer_ids(model, o) for o in ex.options]
        p = prompt_ids(model, ex.prompt)[-(n_ctx - max(map(len, opts))) :]
        logp = ref.next_token_logprobs(model, p)
        scores = [ref.option_logprob(model, p, o) for o in opts]
        assert bool(result.correct[i]) == (int(logp.argmax()) == opts[0][0])
        assert bool(result.correct_restricted[i]) == all(scores[0] > s for s in scores[1:])
        assert abs(float(result.answer_logprob[i]) - float(logp[opts[0][0]])) < 1e-4


# ================================================================================================
# 2. Parameters
# ================================================================================================


@pytest.fixture
def diffs(model, examples):
    return collect_differences(model, examples, ["head", "mlp_out", "resid"], progress=False)


def test_absurd_strength_warns(model, diffs) -> None:
    """A finite strength far outside the papers' ranges warns (it is still applied)."""
    mask = sadi_mask(diffs["head"], 2)
    with pytest.warns(UserWarning, match="far outside the papers' ranges"), steer(model, mask, 1e5):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with steer(model, mask, 8.0):
            pass
    assert no_hooks_left(model)


def _foreign_mask(n_layers: int, name: str):
    other = tiny_model(n_layers=n_layers)
    other.cfg.model_name = name
    d = collect_differences(other, ref.make_examples(4), "head", progress=False)
    return sadi_mask(d, 2)


def test_mask_for_another_model_of_the_same_shape_names_both(model) -> None:
    """Same shape, other model (fingerprint differs): the error names both models."""
    mask = _foreign_mask(model.cfg.n_layers, "other-model")
    with pytest.raises(ValueError) as err, steer(model, mask, 1.0):
        pass
    assert "other-model" in str(err.value) and model.cfg.model_name in str(err.value)
    assert no_hooks_left(model)


def test_mask_for_a_model_of_another_shape_names_both(model) -> None:
    """Another shape (3 layers vs 2): the error names both models, not only the mask's."""
    mask = _foreign_mask(3, "other-model")
    with pytest.raises(ValueError) as err, steer(model, mask, 1.0):
        pass
    assert "other-model" in str(err.value) and model.cfg.model_name in str(err.value)


# ================================================================================================
# 3. Mask files
# ================================================================================================


@pytest.fixture
def mask_file(tmp_path: Path, diffs) -> tuple[Mask, Path]:
    mask = fixed_vector_mask(sadi_mask(diffs["head"], 2), diffs["head"])
    return mask, mask.save(tmp_path / "m.safetensors")


def _header_len(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def _load_outcome(path: Path) -> str:
    """Load; only a Mask, ValueError or FileNotFoundError may come out."""
    try:
        Mask.load(path)
    except (ValueError, FileNotFoundError) as err:
        assert str(err), "empty error message"
        return type(err).__name__
    return "loaded"


def test_zero_length_file(tmp_path: Path) -> None:
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable mask file"):
        Mask.load(tmp_path / "empty.safetensors")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a readable mask file"):
        Mask.load(tmp_path)


@pytest.mark.parametrize("where", ["length prefix", "header start", "header middle", "header end"])
def test_flipped_header_bytes(mask_file, where: str) -> None:
    """Bit flips in the length prefix or the JSON header give a ValueError naming the file."""
    _, path = mask_file
    data = bytearray(path.read_bytes())
    n = _header_len(bytes(data))
    pos = {"length prefix": 3, "header start": 8, "header middle": n // 2, "header end": n - 2}[
        where
    ]
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=path.name):
        Mask.load(path)


def test_safetensors_file_with_other_metadata(tmp_path: Path, mask_file) -> None:
    """A valid safetensors file written by another tool (its own metadata) is refused clearly."""
    mask, _ = mask_file
    path = tmp_path / "other.safetensors"
    save_file(
        {"layers": mask.layers, "weight": torch.ones(3)}, str(path), metadata={"format": "pt"}
    )
    with pytest.raises(ValueError, match="no steerlens metadata"):
        Mask.load(path)


def _rewrite(path: Path, meta: dict | str | None = None, **tensors: torch.Tensor) -> Path:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["steerlens"])
        saved = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if isinstance(meta, dict):
        header.update(meta)
    text = meta if isinstance(meta, str) else json.dumps(header)
    out = path.with_name("rewritten.safetensors")
    save_file({**saved, **tensors}, str(out), metadata={"steerlens": text})
    return out


@pytest.mark.parametrize(
    ("meta", "tensors", "match"),
    [
        ({"unit_shape": [float("inf"), 8]}, {}, "unit_shape"),  # was an OverflowError
        ({"n_layers": 10**30}, {}, "n_layers"),  # was an OverflowError
        ({"n_layers": "2"}, {}, "n_layers"),
        ({"site": ["head"]}, {}, "site must be a string"),
        ({"info": [1, 2]}, {}, "info must be an object"),
        ({"task": 3}, {}, "task must be"),
        (
            '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}",
            {},
            "corrupt mask metadata",
        ),  # RecursionError
        ({}, {"weights": torch.ones(2).to(torch.float8_e4m3fn)}, "dtype"),  # NotImplementedError
        ({}, {"layers": torch.tensor([0, 1], dtype=torch.uint16)}, "dtype"),  # NotImplementedError
        ({}, {"weights": torch.tensor([True, False])}, "dtype"),  # was silently accepted
        ({}, {"indices": torch.tensor([0.0, 1.0])}, "dtype"),
    ],
    ids=[
        "inf-size",
        "huge-n_layers",
        "str-n_layers",
        "list-site",
        "list-info",
        "int-task",
        "deep-json",
        "float8-weights",
        "uint16-layers",
        "bool-weights",
        "float-indices",
    ],
)
def test_header_and_tensor_schema(mask_file, meta, tensors, match: str) -> None:
    """Well-formed safetensors whose steerlens header or tensors have the wrong types: ValueError
    (before, some of these escaped as OverflowError / RecursionError / NotImplementedError)."""
    _, path = mask_file
    with pytest.raises(ValueError, match=match):
        Mask.load(_rewrite(path, meta, **tensors))


_CORRUPTION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
)


def _corrupt(data: bytes, ops: list[tuple], header_only: bool) -> bytes:
    buf = bytearray(data)
    for op, where, arg in ops:
        limit = min(len(buf), _header_len(data)) if header_only else len(buf)
        pos = where % max(limit, 1)
        if op == "flip" and buf:
            buf[pos] ^= arg
        elif op == "truncate":
            del buf[pos:]
        elif op == "delete":
            del buf[pos : pos + arg]
        elif op == "insert":
            buf[pos:pos] = arg
        elif op == "overwrite":
            buf[pos : pos + len(arg)] = arg
    return bytes(buf)


@settings(FUZZ, max_examples=MASK_FUZZ_EXAMPLES)
@given(ops=st.lists(_CORRUPTION, min_size=1, max_size=4), header_only=st.booleans())
def test_fuzz_corrupted_mask_files(mask_file, ops, header_only: bool) -> None:
    """Random byte corruptions (flips, truncations, deletions, insertions, overwrites; half of them
    aimed at the length prefix and JSON header) never escape as anything but ValueError."""
    _, path = mask_file
    bad = path.with_name("fuzzed.safetensors")
    bad.write_bytes(_corrupt(path.read_bytes(), ops, header_only))
    event(_load_outcome(bad))  # shown by pytest --hypothesis-show-statistics


_EDGE = [
    float("inf"),
    float("-inf"),
    float("nan"),
    10**30,
    -(10**30),
    2**63,
    -1,
    0,
    True,
    "",
    "head",
]
_json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_edge = st.sampled_from(_EDGE)
_header_value = _edge | st.lists(_edge | st.integers(1, 8), min_size=1, max_size=3) | _json_value
HEADER_KEYS = sorted(mask_mod._META_KEYS - {"format_version"})


@pytest.mark.parametrize("key", HEADER_KEYS)
@settings(FUZZ, max_examples=HEADER_FUZZ_EXAMPLES)
@given(value=_header_value)
def test_fuzz_mask_header_values(mask_file, key: str, value) -> None:
    """Any JSON value (edge numbers such as inf, NaN, 10**30, 2**63 weighted up) in any one header
    field gives a valid Mask or a ValueError, never another exception type."""
    _, path = mask_file
    event(_load_outcome(_rewrite(path, {key: value})))


def test_unexpected_validation_failure_is_a_value_error(mask_file, monkeypatch) -> None:
    """Whatever goes wrong while rebuilding a loaded mask surfaces as a ValueError naming the
    file (the last line of defence behind the schema checks)."""
    _, path = mask_file

    def broken(self):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(Mask, "__post_init__", broken)
    with pytest.raises(ValueError, match=rf"{path.name}: invalid mask \(unexpected\)"):
        Mask.load(path)


def test_interrupted_save_keeps_the_old_file(mask_file, monkeypatch) -> None:
    """A save killed midway (here: the writer dies after writing half a file) leaves the previous
    mask intact and no temporary file behind."""
    mask, path = mask_file
    import safetensors.torch as st_torch

    def dying_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(st_torch, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        mask.top(1).save(path)
    monkeypatch.undo()
    assert Mask.load(path).k == mask.k
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_interrupted_results_write_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    """The main job's text outputs are written to a temporary file and renamed: a kill before the
    rename leaves the previous results.md whole."""
    target = tmp_path / "results.md"
    target.write_text("old results\n")

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(io_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        io_mod.atomic_write_text(target, "new results\n" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old results\n"


# ================================================================================================
# 4. Hooks and model state: nested steering contexts
# ================================================================================================


def test_nested_contexts_three_deep_equal_the_list_form(model, diffs) -> None:
    """Nesting composes (documented in steer.py): three nested blocks at three sites, including
    the same mask twice, give the logits of the list form; nothing is refused."""
    m1 = sadi_mask(diffs["head"], 2)
    m2 = austeer_mask(diffs["mlp_out"], 5)
    tokens = ids_of(model, "a nested steering prompt:")
    with steer(model, [m1, m2, m1], [1.5, 2.0, -0.5]):
        listed = model(tokens)
    with steer(model, m1, 1.5), steer(model, m2, 2.0), steer(model, m1, -0.5):
        nested = model(tokens)
    assert torch.equal(nested, listed)
    assert no_hooks_left(model)


def test_inner_exception_keeps_outer_steering(model, diffs) -> None:
    """An exception in an inner block removes only the inner hooks; the outer block still steers,
    and the model is clean (bit-identical logits) after both."""
    outer, inner = sadi_mask(diffs["head"], 2), austeer_mask(diffs["resid"], 4)
    tokens = ids_of(model, "outer and inner:")
    clean = model(tokens)
    with steer(model, outer, 2.0):
        only_outer = model(tokens)
        with pytest.raises(RuntimeError, match="inner"), steer(model, inner, 3.0):
            assert not torch.equal(model(tokens), only_outer)
            raise RuntimeError("inner failed")
        assert torch.equal(model(tokens), only_outer)
    assert no_hooks_left(model)
    assert torch.equal(model(tokens), clean)


# ================================================================================================
# 5. Numerics and determinism
# ================================================================================================


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_overflow_names_layer_and_site(model, examples, dtype) -> None:
    """A weight too large for float16 / bfloat16 overflows at layer 1: collection raises
    FloatingPointError naming the site, its hook and the layer, and leaves no hooks."""
    half = model.to(dtype)
    assert half.cfg.dtype == dtype
    clean = collect_differences(half, examples[:4], "mlp_out", progress=False)
    assert bool(torch.isfinite(clean.mean).all())  # the tiny model itself is fine in half
    with torch.no_grad():
        half.blocks[1].mlp.W_out[:, 3] = torch.finfo(dtype).max
    with pytest.raises(FloatingPointError) as err:
        collect_differences(half, examples[:4], ["resid", "mlp_out"], progress=False)
    text = str(err.value)
    assert "layers [1]" in text and ("'resid'" in text or "'mlp_out'" in text), text
    assert "float32" in text  # says what to do
    with pytest.raises(FloatingPointError, match=r"'mlp_out' \(hook_mlp_out\) in layers \[1\]"):
        collect_activations(half, ["hello there"], "mlp_out", progress=False)
    assert no_hooks_left(half)


@pytest.mark.parametrize(("site", "hook"), [("head", "attn.hook_z"), ("neuron", "mlp.hook_post")])
def test_injected_inf_names_layer_and_site(model, examples, site: str, hook: str) -> None:
    """A hook writing inf into layer 1's residual stream (float16 model): the error names the
    site, its hook and layer 1 only."""
    half = model.to(torch.float16)

    def inject(act, hook):
        act = act.clone()
        act[..., 2] = float("inf")
        return act

    match = rf"'{site}' \({hook}\) in layers \[1\]"
    with (
        half.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", inject)]),
        pytest.raises(FloatingPointError, match=match),
    ):
        collect_differences(half, examples[:4], site, progress=False)
    assert no_hooks_left(half)


def test_non_finite_logits_count_as_wrong(model, examples) -> None:
    """An infinite logit on the gold token makes log-probs NaN; the item is wrong, with a warning
    (NaN would otherwise win the argmax and count as correct)."""
    gold = answer_ids(model, "Y")[0]
    with torch.no_grad():
        model.unembed.b_U[gold] = float("inf")
    ys = [ex for ex in examples if ex.answer == "Y"]
    with pytest.warns(UserWarning, match="Non-finite logits"):
        result = evaluate(model, ys, progress=False)
    assert not bool(result.correct.any()) and not bool(result.correct_restricted.any())


def test_nan_log_probs_never_count_as_correct() -> None:
    """torch.argmax treats NaN as the maximum: an all-NaN row "predicts" token 0. A NaN row whose
    gold token is 0 must still count as wrong (and warn); a finite row is scored normally."""
    logp = torch.full((2, 6), -5.0)
    logp[0] = float("nan")
    logp[1, 3] = -0.1
    items = EncodedItems(prompts=[[1, 2], [1, 2]], options=[[[0], [5]], [[3], [4]]])
    with pytest.warns(UserWarning, match="Non-finite logits"):
        hit, _, wins, paper = score_first_tokens(logp, items, [0, 1])
    assert paper is None  # items built from ids alone carry no answer texts
    assert hit.tolist() == [False, True] and wins.tolist() == [False, True]


def _everything(model, examples, seed: int) -> dict[str, object]:
    diffs = collect_differences(
        model, examples, ["head", "mlp_out"], seed=seed, keep_pairs=True, progress=False
    )
    sadi = sadi_mask(diffs["head"], 3)
    aus = austeer_mask(diffs["mlp_out"], 6)
    rnd = random_mask(sadi, seed=seed)
    plain = evaluate(model, examples, batch_size=3, progress=False)
    with steer(model, aus, 4.0):
        steered = evaluate(model, examples, batch_size=3, progress=False)
    return {"diffs": diffs, "masks": (sadi, aus, rnd), "evals": (plain, steered)}


def _same_mask(a: Mask, b: Mask) -> bool:
    return all(
        torch.equal(getattr(a, f).nan_to_num(7.0), getattr(b, f).nan_to_num(7.0))
        for f in ("layers", "indices", "scores", "weights")
    )


def test_same_seed_same_masks_and_results(model) -> None:
    """Twice in one process, with the global RNGs disturbed in between: same seed -> bit-identical
    differences, SADI / AUSteer / random masks and evaluations; another seed changes the
    randomised parts (wrong-answer draw, random mask)."""
    exs = [Example(f"q{i} {'ab' * (i % 4)}:", " Y", (" N", " M", " Q")) for i in range(8)]
    first = _everything(model, exs, seed=3)
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    torch.rand(100)
    second = _everything(model, exs, seed=3)
    for site in ("head", "mlp_out"):
        a, b = first["diffs"][site], second["diffs"][site]
        assert torch.equal(a.pairs, b.pairs) and torch.equal(a.mean, b.mean)
        assert torch.equal(a.n_pos, b.n_pos) and torch.equal(a.n_neg, b.n_neg)
    for a, b in zip(first["masks"], second["masks"], strict=True):
        assert _same_mask(a, b), a.method
    for a, b in zip(first["evals"], second["evals"], strict=True):
        assert torch.equal(a.correct, b.correct)
        assert torch.equal(a.correct_restricted, b.correct_restricted)
        assert torch.equal(a.answer_logprob, b.answer_logprob)
    other = collect_differences(model, exs, "head", seed=4, keep_pairs=True, progress=False)
    assert not torch.equal(other.pairs, first["diffs"]["head"].pairs)
    assert not _same_mask(random_mask(first["masks"][0], seed=4), first["masks"][2])


# ================================================================================================
# CLI: bad arguments exit 2 with one line, before the model is loaded
# ================================================================================================


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model during these tests is a failure: validation must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before the task was validated")

    monkeypatch.setattr(run_mod, "load_model", forbidden)


def _one_line_error(capsys, rc: int) -> str:
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_cli_unknown_task(tmp_path: Path, capsys, no_model_load) -> None:
    rc = cli_main(["run", "--task", "doesnotexist", "--out", str(tmp_path / "out")])
    line = _one_line_error(capsys, rc)
    assert line.startswith("steerlens run: error: unknown task 'doesnotexist'")
    assert "sentiment" in line  # lists the valid names
    assert not (tmp_path / "out").exists()


def test_cli_missing_and_malformed_task_files(tmp_path: Path, capsys, no_model_load) -> None:
    rc = cli_main(["run", "--task", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert "does not exist" in _one_line_error(capsys, rc)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a:", "answer": " A", "wrong": " B"}\n{"prompt": "b:", "answer": 3}\n'
    )
    rc = cli_main(["run", "--task", str(bad), "--out", str(tmp_path / "o")])
    assert "bad.jsonl, line 2" in _one_line_error(capsys, rc)


def test_cli_bad_choice_is_argparse_usage_error(capsys, no_model_load) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["run", "--methods", "sadi-everything"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_load_jsonl_missing_or_directory(tmp_path: Path) -> None:
    """load_jsonl on a missing path or a directory: FileNotFoundError naming it (not an OSError)."""
    for path in (tmp_path / "missing.jsonl", tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist or is not a file"):
            load_jsonl(path)


def test_conversion_race_keeps_one_copy_and_no_temporaries(tmp_path: Path) -> None:
    """Two processes converting the embedded model at once: the first finished copy is kept, the
    second's temporary directory is removed; a failed move with no copy in place still raises."""
    from steerlens.models import _publish

    out = tmp_path / "entry"
    for name, marker in (("a.tmp", "first"), ("b.tmp", "second")):
        tmp = tmp_path / name
        tmp.mkdir()
        (tmp / "model.safetensors").write_text(marker)
        _publish(tmp, out)
        assert not tmp.exists()
    assert (out / "model.safetensors").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]
    blocked = tmp_path / "blocked"
    (blocked / "not-a-model").mkdir(parents=True)  # a non-empty directory without weights
    tmp = tmp_path / "c.tmp"
    tmp.mkdir()
    (tmp / "model.safetensors").write_text("third")
    with pytest.raises(OSError):
        _publish(tmp, blocked)
    assert not tmp.exists()
