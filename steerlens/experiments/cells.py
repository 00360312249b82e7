"""The cells of a reproduction: its configuration, one cell per (model, task, format, method),
and the spec that decides whether a stored cell record can be reused."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from .._types import Metric
from ..evaluate import METRICS
from ..methods import BASELINE, METHOD_NAMES, METHODS, get_method
from ..models import EMBEDDED_MODEL
from ..tasks import PAPER_TASKS, DemoMode, PromptStyle
from .records import FORMAT_VERSION, jsonable

ALL_METHODS: tuple[str, ...] = (BASELINE, *METHOD_NAMES)
DEFAULT_METHODS: tuple[str, ...] = (BASELINE, *(m for m in METHOD_NAMES if not METHODS[m].released))
"""What `steerlens reproduce` runs by default: steerlens' own variant of every method."""
RELEASED_METHODS: tuple[str, ...] = (
    BASELINE,
    "sadi-head-released",
    "sadi-neuron-released",
    "sadi-hidden-released",
    "austeer-attention-released",
    "austeer-ffn-released",
    "caa-released",
    "iti-released",
)
"""What `steerlens reproduce --released` runs: each method as its authors' code runs it."""
AUSTEER_TABLE3: tuple[str, ...] = (
    "austeer-ffn-mean-diff-released",
    "austeer-ffn-random",
    "austeer-ffn-fixed-vector",
)
"""AUSteer's Table 3 ablations on its FFN units (released texts), run on request (`--methods`)."""
GridOverride = tuple[tuple[int, ...] | None, tuple[float, ...]]


@dataclass(frozen=True)
class ReproduceConfig:
    """What a reproduction depends on; every cell record carries the parts that shape it.

    `shots` lists the prompt formats: 0 is the papers' raw zero-shot template, k > 0 puts k train
    demonstrations before each prompt. `grid` names the registry grid each method uses
    ("reproduce", "run" or "quick"); `grids` overrides `(settings, strengths)` per method.
    """

    models: tuple[str | None, ...] = (None,)
    tasks: tuple[str, ...] = PAPER_TASKS
    shots: tuple[int, ...] = (0, 4)
    style: PromptStyle = "raw"
    demos: DemoMode = "shared"
    data_dir: str | None = None
    n_train: int | None = 150
    n_dev: int | None = 100
    n_test: int | None = 250
    methods: tuple[str, ...] = DEFAULT_METHODS
    grid: str = "reproduce"
    grids: Mapping[str, GridOverride] = field(default_factory=dict)
    metric: Metric = "accuracy"
    batch_size: int = 16
    seed: int = 0
    n_boot: int = 2000
    device: str | None = None
    out: str = "runs/reproduce"

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(ALL_METHODS)
        if unknown:
            raise ValueError(f"Unknown methods {sorted(unknown)}; valid: {list(ALL_METHODS)}")
        if self.metric not in METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}; valid: {METRICS}")
        unknown = set(self.grids) - set(METHOD_NAMES)
        if unknown:
            raise ValueError(f"Grids given for unknown methods {sorted(unknown)}")
        if self.grid not in ("reproduce", "run", "quick"):
            raise ValueError(f"grid must be 'reproduce', 'run' or 'quick', got {self.grid!r}")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.shots):
            raise ValueError(f"shots must be non-negative ints, got {self.shots}")

    def method_grid(self, name: str, n_layers: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """`(settings, strengths)` of a method in this config, for a model of `n_layers`."""
        method = get_method(name)
        settings, strengths = method.grid_spec(self.grid, n_layers)
        if name in self.grids:
            override, strengths = self.grids[name]
            settings = tuple(override) if override is not None else settings
        return settings, tuple(float(a) for a in strengths)


def quick_config(*, released: bool = False, **changes: Any) -> ReproduceConfig:
    """CI-sized run: 2 tasks, 24 pairs, 16 dev, 24 test items, SADI-head and AUSteer-FFN + none
    (`released`: their released variants, tuned on the paper metric)."""
    base = ReproduceConfig(
        tasks=("sst2", "copa"),
        shots=(0,),
        n_train=24,
        n_dev=16,
        n_test=24,
        methods=(BASELINE, "sadi-head", "austeer-ffn"),
        grid="quick",
        n_boot=500,
        out="runs/reproduce-quick",
    )
    if released:
        base = dataclasses.replace(
            base,
            methods=(BASELINE, "sadi-head-released", "austeer-ffn-released"),
            metric="paper",
            out="runs/reproduce-quick-released",
        )
    return dataclasses.replace(base, **changes)


def released_config(**changes: Any) -> ReproduceConfig:
    """The papers' methods as their authors' code runs them (`RELEASED_METHODS`), every train pair
    the split has (AUSteer used up to 1000; SADI 1500-2000, more than the splits here hold),
    K and strength chosen on dev by the papers' string metric ("paper")."""
    base = ReproduceConfig(
        methods=RELEASED_METHODS, n_train=None, metric="paper", out="runs/reproduce-released"
    )
    return dataclasses.replace(base, **changes)


def model_label(model: str | None) -> str:
    return model or EMBEDDED_MODEL


def format_label(n_shot: int) -> str:
    return f"{n_shot}-shot"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


@dataclass(frozen=True)
class Cell:
    """One entry of the table: a method on one task, prompt format and model."""

    model: str | None
    task: str
    n_shot: int
    method: str

    @property
    def group(self) -> tuple[str | None, str, int]:
        return (self.model, self.task, self.n_shot)

    def filename(self, spec_id: str) -> str:
        """``<model>__<task>__<format>__<method>__<spec id>.json``: readable, and distinct for
        every configuration, so shards never overwrite each other's records."""
        parts = (model_label(self.model), self.task, format_label(self.n_shot), self.method)
        return "__".join(slug(p) for p in (*parts, spec_id)) + ".json"


def cell_spec(config: ReproduceConfig, cell: Cell, n_layers: int) -> dict[str, Any]:
    """Everything that determines a cell's result; a stored record is reused only if it matches.

    The package version is part of it: records of another steerlens version are recomputed.
    """
    spec: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "steerlens": __version__,
        "model": model_label(cell.model),
        "task": cell.task,
        "style": config.style,
        "n_shot": cell.n_shot,
        **({"demos": config.demos} if cell.n_shot else {}),  # 0-shot records stay valid
        "method": cell.method,
        "n_train": config.n_train,
        "n_dev": config.n_dev,
        "n_test": config.n_test,
        "metric": config.metric,
        "seed": config.seed,
        "n_boot": config.n_boot,  # the stored intervals
    }
    if cell.method != BASELINE:
        settings, strengths = config.method_grid(cell.method, n_layers)
        spec["settings"] = [jsonable(s) for s in settings]
        spec["strengths"] = list(strengths)
        pair_format = get_method(cell.method).pair_format
        if pair_format != "template":  # records from before text formats existed stay valid
            spec["pair_format"] = pair_format
    return json.loads(json.dumps(spec))  # normalise tuples to lists, as stored


def spec_id(spec: Mapping[str, Any]) -> str:
    """Short hash of a cell's spec: the name of its record file."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


NOT_IDENTITY = ("device", "out", "batch_size")
"""Config fields that may differ between the shards of one run (each machine's own)."""


def run_identity(config: ReproduceConfig) -> dict[str, Any]:
    """What all shards writing to one directory must share: the config but for `NOT_IDENTITY`,
    and the package version."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    identity = {k: jsonable(v) for k, v in fields.items() if k not in NOT_IDENTITY}
    identity["grids"] = {k: jsonable(v) for k, v in sorted(config.grids.items())}
    identity["steerlens"] = __version__
    return json.loads(json.dumps(identity))


def plan(config: ReproduceConfig) -> list[Cell]:
    """All cells of the config, grouped by (model, task, format), methods in table order."""
    return [
        Cell(model, task, n_shot, method)
        for model in config.models
        for task in config.tasks
        for n_shot in config.shots
        for method in config.methods
    ]
