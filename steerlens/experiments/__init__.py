"""Drivers: the main job, the reproduction, the ablations and the figure set.

Each driver reads the method registry (`steerlens.methods`) and tunes with `steerlens.tune`;
results are `Record`s written by `report`. The command line (`steerlens.cli`) builds their
configs from arguments.
"""

from .ablations import AblationConfig, run_ablations
from .cells import ReproduceConfig, quick_config
from .figure_set import FiguresConfig, make_figure_sets, make_figures
from .main_job import RunConfig, RunResult, run_job
from .records import Record, TestScores
from .reproduce import ReproduceResult, run_reproduction

__all__ = [
    "AblationConfig",
    "FiguresConfig",
    "Record",
    "ReproduceConfig",
    "ReproduceResult",
    "RunConfig",
    "RunResult",
    "TestScores",
    "make_figure_sets",
    "make_figures",
    "quick_config",
    "run_ablations",
    "run_job",
    "run_reproduction",
]
