"""Drivers: the main job, the reproduction, the ablations, the figure set, TruthfulQA's MC1/MC2
job (`mc_job`) and the transfer table (`transfer`).

Each driver reads the method registry (`steerlens.methods`) and tunes with `steerlens.tune`;
results are `Record`s written by `report`. The command line (`steerlens.cli`) builds their
configs from arguments.
"""

from .ablations import AblationConfig, run_ablations
from .cells import ReproduceConfig, quick_config
from .figure_set import FiguresConfig, make_figure_sets, make_figures
from .main_job import RunConfig, RunResult, run_job
from .mc_job import McConfig, McRunResult, run_mc
from .records import Record, TestScores
from .reproduce import ReproduceResult, run_reproduction
from .transfer import TransferConfig, TransferResult, run_transfer

__all__ = [
    "AblationConfig",
    "FiguresConfig",
    "McConfig",
    "McRunResult",
    "Record",
    "ReproduceConfig",
    "ReproduceResult",
    "RunConfig",
    "RunResult",
    "TestScores",
    "TransferConfig",
    "TransferResult",
    "make_figure_sets",
    "make_figures",
    "quick_config",
    "run_ablations",
    "run_job",
    "run_mc",
    "run_reproduction",
    "run_transfer",
]
