"""Launch the shards of a reproduction as jobs of a cluster through submitit (Slurm), or of
submitit's local executor (the same code path on one machine, as the tests run it).

Each job runs `run_reproduction(config, shard=(i, N))` and writes its records under the shared
``<out>``; once all jobs are done, `assemble` writes the tables from the records alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cells import ReproduceConfig
from .reproduce import ReproduceResult, TaskLoader, assemble, run_reproduction


def run_shard(
    config: ReproduceConfig,
    index: int,
    count: int,
    workers: int = 1,
    threads: int = 1,
    task_loader: TaskLoader | None = None,
) -> list[str]:
    """One job: shard `index` of `count`; returns the record files it computed."""
    result = run_reproduction(
        config,
        task_loader=task_loader,
        progress=False,
        workers=workers,
        threads=threads,
        shard=(index, count),
    )
    return result.computed


def slurm_executor(folder: str | Path, *, local: bool = False, **parameters: Any) -> Any:
    """A submitit executor writing its logs under `folder`: Slurm where `sbatch` exists, or the
    local executor (`local=True`). `parameters` are submitit's (`slurm_partition`,
    `timeout_min`, `gpus_per_node`, `cpus_per_task`, `mem_gb`, ...)."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster="local" if local else None)
    executor.update_parameters(name="steerlens-reproduce", **parameters)
    return executor


def submit_shards(
    config: ReproduceConfig,
    count: int,
    executor: Any,
    *,
    workers: int = 1,
    threads: int = 1,
    task_loader: TaskLoader | None = None,
) -> list[Any]:
    """Submit `count` shard jobs as one array; returns submitit's jobs."""
    if count < 1:
        raise ValueError(f"the number of shards must be at least 1, got {count}")
    with executor.batch():
        jobs = [
            executor.submit(run_shard, config, i, count, workers, threads, task_loader)
            for i in range(count)
        ]
    return jobs


def wait_and_assemble(config: ReproduceConfig, jobs: Sequence[Any]) -> ReproduceResult:
    """Wait for every job (re-raising the first failure with its log's path), then assemble."""
    for job in jobs:
        try:
            job.result()
        except Exception as err:
            where = getattr(getattr(job, "paths", None), "stderr", "its log")
            raise RuntimeError(f"shard job {job.job_id} failed (see {where}): {err}") from err
    return assemble(config)
