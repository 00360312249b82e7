"""The method registry: every fact about each steering method, in one frozen table.

A `Method` says which site it reads, how a mask is built from that site's differences for one
setting (K units, or CAA's layer), which positions it steers, its grids (the main job's, the
reproduction's and a CI-sized one) and the numbers the papers publish for it. `steerlens run`,
`steerlens reproduce`, the ablations, the figures and the tests read `METHODS` and nothing else,
so a method added here (with the module that builds its masks) appears in all of them.

Grids are sized from the model: `Method.grid(diffs)` clamps K to the units the site offers, and
CAA's layers are fractions of the depth (`Method.default_settings(n_layers)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from ._types import PairFormat, Positions, UnitKind
from .baselines import caa_mask, fixed_vector_mask, iti_mask, random_mask
from .collect import Differences
from .iti import ITI_MODEL_HEADS, iti_released_mask, scaled_k
from .mask import Mask
from .mean_difference import mean_difference_mask
from .published import (
    AU_LOG,
    AUSTEER_FFN_PUBLISHED,
    ITI_T1,
    SADI_T1,
    SADI_T1_HEAD,
    SADI_T1_HIDDEN,
    SADI_T1_NEURON,
    SADI_T4,
    UNSTEERED_PUBLISHED,
    Published,
    published_key,
    published_table,
)
from .select import austeer_mask, sadi_mask
from .sites import Site

Build = Callable[[Differences, int], Mask]
GridSpec = tuple[
    tuple[int, ...] | None, tuple[float, ...]
]  # (settings or None = default, strengths)
DEPTH_FRACTIONS = (1 / 3, 1 / 2, 2 / 3)  # CAA's default layers, as fractions of the depth


@dataclass(frozen=True)
class Method:
    """One steering method: where it reads, how it builds a mask, its grids, published numbers.

    `build(diffs, setting)` makes the mask for one setting from the differences at `site`. When
    `nested`, settings are mask sizes and the grid holds prefixes (`top(k)`) of the mask built at
    the largest K, so every K shares one ranking. With `k_reference`, settings are K for a model
    offering that many units, and `grid` scales them to the model (ITI's 48 of 1024 heads). With
    `needs_sides`, the builder reads each text's activations (`collect_differences(...,
    keep_sides=True)`), not only the differences.
    """

    name: str
    site: Site
    build: Build
    positions: Positions
    settings: tuple[int, ...] = ()
    strengths: tuple[float, ...] = ()
    setting_name: str = "K"
    unit: UnitKind = "dim"
    nested: bool = True
    reproduce: GridSpec | None = None
    quick: GridSpec | None = None
    published: Published = field(default_factory=lambda: MappingProxyType({}))
    summary: str = ""
    depth_fractions: tuple[float, ...] = DEPTH_FRACTIONS  # layer methods without fixed settings
    pair_format: PairFormat = "template"  # how its contrastive texts are written
    released: bool = False  # runs as its authors' released code does (`reproduce --released`)
    control: bool = False  # an ablation control (random units, a fixed vector, another ranking)
    needs_sides: bool = False
    k_reference: int | None = None

    @property
    def differences_key(self) -> str:
        """Which differences the method reads: its site, with the pair format unless "template"
        (`head@sadi`), so methods that write their texts alike share one collection."""
        return self.site if self.pair_format == "template" else f"{self.site}@{self.pair_format}"

    def default_settings(self, n_layers: int) -> tuple[int, ...]:
        """The main job's settings for a model of `n_layers` (CAA: layers at fractions of depth)."""
        if self.setting_name == "layer" and not self.settings:
            return tuple(
                dict.fromkeys(min(n_layers - 1, round(n_layers * f)) for f in self.depth_fractions)
            )
        return self.settings

    def grid_spec(self, which: str, n_layers: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """`(settings, strengths)` of the "run", "reproduce" or "quick" grid (falling back to run's)."""
        if which not in ("run", "reproduce", "quick"):
            raise ValueError(f"grid must be 'run', 'reproduce' or 'quick', got {which!r}")
        spec = {"run": None, "reproduce": self.reproduce, "quick": self.quick}[which]
        settings, strengths = spec if spec is not None else (None, self.strengths)
        return (settings or self.default_settings(n_layers)), tuple(strengths)

    def grid(self, diffs: Differences, settings: Sequence[int]) -> dict[Hashable, Mask]:
        """`{setting: mask}` for `settings`; K larger than the units available is clamped."""
        if diffs.site != self.site:
            raise ValueError(
                f"{self.name} reads site {self.site!r}, got differences at {diffs.site!r}"
            )
        if not settings:
            raise ValueError(f"{self.name}: no settings to build")
        if self.needs_sides and (diffs.positive is None or diffs.negative is None):
            raise ValueError(
                f"{self.name} needs each text's activations, not only the differences: "
                "collect with collect_differences(..., keep_sides=True)"
            )
        if not self.nested:
            return {s: self.build(diffs, int(s)) for s in dict.fromkeys(settings)}
        per_layer = diffs.unit_shape[0] if self.unit == "head" else math.prod(diffs.unit_shape)
        total = diffs.n_layers * per_layer
        if self.k_reference is not None:
            settings = [scaled_k(int(k), total, self.k_reference) for k in settings]
        ks = list(dict.fromkeys(min(int(k), total) for k in settings))
        full = self.build(diffs, max(ks))
        return {k: full.top(k) for k in ks}

    def paper(self, task: str) -> tuple[float, str] | None:
        """`(accuracy %, source)` the papers publish for this method on `task`, or None
        (``"mmlu+released"``, SADI's own rows, finds the ``"mmlu"`` number)."""
        return self.published.get(published_key(task))


# SADI's released grids (`steering.py`) in delta units (their strength 5..80 is 1 + delta).
_SADI_HEAD_K = (1, 2, 4, 6, 8, 10)
_SADI_DELTAS = tuple(float(s - 1) for s in range(5, 85, 5))
# AUSteer: every published LLaMA2-7B-Chat optimum (BoolQ k100 a15, COPA k16 a50, Winogrande k2
# a100, SVAMP k50 a8, MAWPS k80 a8; the authors' reproduce.sh) is a cell of this grid.
_AUSTEER_K = (2, 16, 50, 80, 100)
_AUSTEER_ALPHA = (8.0, 15.0, 50.0, 100.0)
_ENTRIES = (
    Method(
        "sadi-head",
        "head",
        lambda d, k: sadi_mask(d, k),
        "last",
        (1, 2, 4, 8),
        (0.25, 0.5, 1.0, 2.0),
        reproduce=((1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 19.0)),
        quick=((1, 4), (0.5, 1.0)),
        published=SADI_T1_HEAD,
        unit="head",
        summary="SADI: top-K heads by mean difference, scale at the last prompt token",
    ),
    Method(
        "sadi-neuron",
        "neuron",
        lambda d, k: sadi_mask(d, k),
        "last",
        (5, 10, 30, 100),
        (0.5, 1.0, 2.0, 4.0),
        reproduce=((5, 30, 100, 300), (0.5, 2.0, 9.0, 29.0)),
        published=SADI_T1_NEURON,
        summary="SADI: top-K MLP neurons (mlp.hook_post)",
    ),
    Method(
        "sadi-hidden",
        "mlp_out",
        lambda d, k: sadi_mask(d, k),
        "last",
        (2, 4, 8, 16),
        (0.5, 1.0, 2.0, 4.0),
        reproduce=((2, 4, 8, 16), (0.5, 2.0, 9.0, 19.0)),
        published=SADI_T1_HIDDEN,
        summary="SADI: top-K hidden dims of the MLP output",
    ),
    Method(
        "austeer-attention",
        "head",
        lambda d, k: austeer_mask(d, k),
        "all",
        (10, 30, 100),
        (1.0, 4.0, 16.0),
        reproduce=((10, 100), (2.0, 8.0, 32.0)),
        # The authors' log runs one module per task (the best); BoolQ used attention.
        published=published_table(AU_LOG + ", attention, k=100, alpha=15", boolq=76.27),
        summary="AUSteer: top-k hook_z dims by sign consistency, adaptive scale everywhere",
    ),
    Method(
        "austeer-ffn",
        "mlp_out",
        lambda d, k: austeer_mask(d, k),
        "all",
        (10, 30, 100),
        (1.0, 4.0, 16.0),
        reproduce=((10, 100), (2.0, 8.0, 32.0)),
        quick=((10, 30), (1.0, 4.0)),
        published=AUSTEER_FFN_PUBLISHED,
        summary="AUSteer: top-k MLP-output dims by sign consistency",
    ),
    Method(
        "caa",
        "resid",
        lambda d, layer: caa_mask(d, layer),
        "all",
        (),
        (0.5, 1.0, 2.0),
        setting_name="layer",
        nested=False,
        reproduce=(None, (0.5, 2.0)),
        published=published_table(
            SADI_T1,
            copa=75.20,
            storycloze=74.65,
            sst2=91.16,
            boolq=74.98,
            winogrande=52.64,
            mmlu=46.17,
            **{"xnli-en": 64.13},
        ),
        summary="CAA: add the mean residual difference at one layer",
    ),
    Method(
        "caa-released",
        "resid",
        lambda d, layer: caa_mask(d, layer, positions="from"),
        "from",
        (),
        (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0),
        setting_name="layer",
        nested=False,
        depth_fractions=tuple(i / 10 for i in range(10)),
        released=True,
        summary="CAA as released: from the end of the prompt on, every tenth of the depth, "
        "both signs of the multiplier",
    ),
    Method(
        "iti",
        "head",
        lambda d, k: iti_mask(d, k),
        "all",
        (2, 4, 8),
        (1.0, 2.0, 4.0),
        reproduce=((4, 16), (1.0, 4.0, 16.0)),
        published=ITI_T1,
        unit="head",
        summary="ITI (energy-ratio ranking): add each top head's mean difference",
    ),
    Method(
        "iti-released",
        "head",
        lambda d, k: iti_released_mask(d, k),
        "each_last",
        (24, 48, 96),  # K of 1024 heads (ITI's 48 for LLaMA-7B), scaled to the model
        (5.0, 10.0, 15.0, 20.0),  # ITI's alpha = 15
        quick=((48,), (5.0, 15.0)),
        published=ITI_T1,
        unit="head",
        needs_sides=True,
        released=True,
        k_reference=ITI_MODEL_HEADS,
        summary="ITI as released: heads ranked by held-out probe accuracy, alpha * std * unit "
        "mass-mean shift at the last position of every pass",
    ),
    Method(
        "sadi-head-fixed-vector",
        "head",
        lambda d, k: fixed_vector_mask(sadi_mask(d, k), d),
        "last",
        (1, 2, 4, 8),
        (0.5, 1.0, 2.0, 4.0),
        reproduce=((1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 19.0)),
        published=published_table(
            SADI_T4, copa=71.20, storycloze=69.42, sst2=91.43, winogrande=52.56
        ),
        unit="head",
        control=True,
        summary="SADI Table 4: add the mean difference on SADI's heads",
    ),
    Method(
        "sadi-head-random",
        "head",
        lambda d, k: random_mask(sadi_mask(d, k), seed=0),
        "last",
        (1, 2, 4, 8),
        (0.25, 0.5, 1.0, 2.0),
        reproduce=((1, 2, 4, 8), (0.25, 0.5, 1.0, 2.0, 4.0, 9.0, 19.0)),
        published=published_table(
            SADI_T4, copa=72.40, storycloze=71.87, sst2=91.48, winogrande=52.88
        ),
        unit="head",
        control=True,
        summary="SADI Table 4: as many heads, placed at random",
    ),
    Method(
        "austeer-ffn-mean-diff",
        "mlp_out",
        mean_difference_mask,
        "all",
        (10, 100),
        (1.0, 4.0, 16.0),
        reproduce=((10, 100), (2.0, 8.0, 32.0)),
        control=True,
        summary="AUSteer Table 3: FFN dims ranked by |mean difference| instead of consistency",
    ),
    # ---- as the authors' released code runs them (`steerlens reproduce --released`) ----------
    Method(
        "sadi-head-released",
        "head",
        lambda d, k: sadi_mask(d, k, mode="released"),
        "last",
        _SADI_HEAD_K,
        _SADI_DELTAS,
        quick=((1, 4), (4.0, 19.0)),
        published=SADI_T1_HEAD,
        unit="head",
        pair_format="sadi",
        released=True,
        summary="SADI-HEAD as released: clamp the heads at the last prompt token in every layer "
        "to their clean values, top-K x (1 + delta); texts 'prompt.strip() answer'",
    ),
    Method(
        "sadi-neuron-released",
        "gate",
        lambda d, k: sadi_mask(d, k, mode="released"),
        "last",
        (3, 5, 10, 30, 50, 100, 200, 300, 400, 500),
        (9.0, 19.0, 29.0, 49.0, 69.0, 89.0),  # strength 10, 20, 30, 50, 70, 90
        published=SADI_T1_NEURON,
        pair_format="sadi",
        released=True,
        summary="SADI-NEURON as released: ranked and clamped on act_fn(gate)",
    ),
    Method(
        "sadi-hidden-released",
        "mlp_out",
        lambda d, k: sadi_mask(d, k, mode="released"),
        "last",
        (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20),
        _SADI_DELTAS,
        published=SADI_T1_HIDDEN,
        pair_format="sadi",
        released=True,
        summary="SADI-HIDDEN as released: MLP-output dims, clamped",
    ),
    Method(
        "austeer-attention-released",
        "head",
        lambda d, k: austeer_mask(d, k),
        "all",
        _AUSTEER_K,
        _AUSTEER_ALPHA,
        published=published_table(AU_LOG + ", attention, k=100, alpha=15", boolq=76.27),
        pair_format="austeer",
        released=True,
        summary="AUSteer as released: texts 'prompt+answer' with no separator; a grid holding "
        "the published LLaMA optima",
    ),
    Method(
        "austeer-ffn-released",
        "mlp_out",
        lambda d, k: austeer_mask(d, k),
        "all",
        _AUSTEER_K,
        _AUSTEER_ALPHA,
        quick=((16, 100), (8.0, 50.0)),
        published=AUSTEER_FFN_PUBLISHED,
        pair_format="austeer",
        released=True,
        summary="AUSteer-FFN as released (texts with no separator)",
    ),
    Method(
        "austeer-ffn-mean-diff-released",
        "mlp_out",
        mean_difference_mask,
        "all",
        _AUSTEER_K,
        _AUSTEER_ALPHA,
        pair_format="austeer",
        released=True,
        control=True,
        summary="AUSteer Table 3: FFN dims ranked by |mean difference| (AUSteer's texts)",
    ),
    Method(
        "austeer-ffn-random",
        "mlp_out",
        lambda d, k: random_mask(austeer_mask(d, k), seed=0),
        "all",
        _AUSTEER_K,
        _AUSTEER_ALPHA,
        pair_format="austeer",
        released=True,
        control=True,
        summary="AUSteer Table 3: as many FFN units at random places, same adaptive strengths",
    ),
    Method(
        "austeer-ffn-fixed-vector",
        "mlp_out",
        lambda d, k: fixed_vector_mask(austeer_mask(d, k), d),
        "all",
        _AUSTEER_K,
        (0.5, 1.0, 2.0, 4.0),
        pair_format="austeer",
        released=True,
        control=True,
        summary="AUSteer Table 3: add the mean difference on AUSteer's FFN units",
    ),
)

METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ENTRIES})
"""Every registered method by name, in table order (read-only)."""

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)

BASELINE = "none"
"""The unsteered model's row name in every results table."""


def get_method(name: str) -> Method:
    """The registered method `name`; an unknown name lists the valid ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid: {list(METHODS)}")
    return METHODS[name]


def published(method: str, task: str) -> tuple[float, str] | None:
    """`(accuracy %, source)` the papers report for `method` (or "none") on `task`, or None."""
    if method == BASELINE:
        return UNSTEERED_PUBLISHED.get(published_key(task))
    return get_method(method).paper(task)


__all__ = ["BASELINE", "METHODS", "METHOD_NAMES", "Method", "get_method", "published"]
