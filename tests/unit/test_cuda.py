"""The CUDA path: every stage runs on a GPU and agrees with the CPU (skipped without CUDA).

Run the whole unit suite on a GPU with `STEERLENS_TEST_DEVICE=cuda python3 -m pytest tests/unit`;
this file compares the two devices directly.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from steerlens import (
    austeer_mask,
    caa_mask,
    collect_differences,
    encode_items,
    evaluate,
    sadi_mask,
    steer,
    sweep,
)
from steerlens.tune import Grid, tune
from tests.reference import make_examples
from tests.tiny import tiny_model

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:.*flip.* sign"),
]
SITES = ["head", "neuron", "mlp_out", "resid"]


@pytest.fixture(scope="module")
def pair():
    """The same tiny model on the CPU and on the GPU."""
    return tiny_model(n_layers=4, device="cpu"), tiny_model(n_layers=4, device="cuda")


def test_collection_agrees_across_devices(pair) -> None:
    cpu, gpu = pair
    examples = make_examples(20, seed=3)
    on_cpu = collect_differences(cpu, examples, SITES, batch_size=6, progress=False)
    on_gpu = collect_differences(gpu, examples, SITES, batch_size=6, progress=False)
    for site in SITES:
        a, b = on_cpu[site], on_gpu[site]
        assert b.mean.device.type == "cpu"  # statistics come back to host memory
        torch.testing.assert_close(a.mean, b.mean, atol=1e-5, rtol=1e-4)
        assert (a.n_pos - b.n_pos).abs().max() <= 1  # a sign may flip on a float-level tie
    assert sadi_mask(on_cpu["head"], 3).unit_set() == sadi_mask(on_gpu["head"], 3).unit_set()


def test_steered_evaluation_and_hooks_on_gpu(pair) -> None:
    cpu, gpu = pair
    examples = make_examples(16, seed=4)
    diffs = collect_differences(cpu, examples, ["head", "mlp_out"], progress=False)
    for mask, strength in (
        (sadi_mask(diffs["head"], 2), 3.0),
        (austeer_mask(diffs["mlp_out"], 10), 8.0),
    ):
        results = []
        for model in pair:
            with steer(model, mask, strength):
                results.append(evaluate(model, examples, batch_size=5, progress=False))
            assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
        torch.testing.assert_close(
            results[0].answer_logprob, results[1].answer_logprob, atol=1e-4, rtol=0
        )
    base = evaluate(gpu, examples, progress=False)
    assert not torch.allclose(base.answer_logprob, results[1].answer_logprob, atol=1e-3)


@pytest.mark.parametrize("positions", ["last", "all"])
def test_fast_sweeps_on_gpu_equal_naive(pair, positions: str) -> None:
    """The prefix-cached SADI sweep and the packed all-position sweep (several settings per pass
    by default on CUDA) give the from-scratch results, and those of the CPU."""
    cpu, gpu = pair
    examples = make_examples(12, seed=5)
    items = encode_items(gpu, examples)
    diffs = collect_differences(cpu, examples, ["head", "mlp_out", "resid"], progress=False)
    if positions == "last":
        masks = {k: sadi_mask(diffs["head"], k) for k in (1, 3)}
    else:
        masks = {"ffn": austeer_mask(diffs["mlp_out"], 12), "caa": caa_mask(diffs["resid"], 2)}
    kw = {"batch_size": 5, "progress": False}
    fast = sweep(gpu, items, masks, [0.5, 4.0], **kw)
    naive = sweep(gpu, items, masks, [0.5, 4.0], fast=False, **kw)
    on_cpu = sweep(cpu, examples, masks, [0.5, 4.0], **kw)
    for other in (naive, on_cpu):
        for a, b in zip(
            [fast.baseline, *fast.results], [other.baseline, *other.results], strict=True
        ):
            torch.testing.assert_close(a.answer_logprob, b.answer_logprob, atol=1e-4, rtol=0)


def test_tune_on_gpu(pair) -> None:
    _, gpu = pair
    examples = make_examples(24, seed=6)
    diffs = collect_differences(gpu, examples[:12], "mlp_out", progress=False)
    full = austeer_mask(diffs, 20)
    dev, test = encode_items(gpu, examples[12:18]), encode_items(gpu, examples[18:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = Grid({k: full.top(k) for k in (5, 20)}, (1.0, 4.0))
        out = tune(gpu, dev, test, {"au": grid}, batch_size=4).arms["au"]
    assert out.choice.setting in (5, 20) and out.test.n == 6
    assert all(not hp.fwd_hooks for hp in gpu.hook_dict.values())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_collection_on_gpu(dtype) -> None:
    """Reduced precision runs on the GPU and stays close to float32."""
    ref = tiny_model(n_layers=2, device="cuda")
    half = tiny_model(n_layers=2, device="cuda").to(dtype)
    half.cfg.dtype = dtype
    examples = make_examples(12, seed=7)
    a = collect_differences(ref, examples, "mlp_out", progress=False)
    b = collect_differences(half, examples, "mlp_out", progress=False)
    assert b.mean.dtype == torch.float32
    torch.testing.assert_close(a.mean, b.mean, atol=5e-2, rtol=5e-2)
