"""Shards as jobs through submitit's local executor (the code path of a Slurm array), then an
assembly that loads no model: the same table as one serial run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import steerlens
from steerlens.experiments import launch
from steerlens.experiments import reproduce as rep
from tests.families import build_family
from tests.unit.test_reproduce import config, outcome, table_text, tiny_task

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign", "ignore:.*pairs have identical")


def test_two_shard_jobs_and_assembly_equal_the_serial_run(tmp_path, monkeypatch) -> None:
    pytest.importorskip("submitit")
    path = build_family("llama", tmp_path)  # jobs load the model by its directory
    cfg = config(tmp_path, models=(str(path),), tasks=("t1", "t2"), methods=("none", "sadi-head"))
    serial = rep.run_reproduction(
        cfg,
        model=steerlens.load_model(str(path), device="cpu"),
        task_loader=tiny_task,
        progress=False,
    )
    sharded = dataclasses.replace(cfg, out=str(tmp_path / "sharded"))
    with pytest.raises(ValueError, match="4 of 4 cells have no finished record"):
        rep.assemble(sharded)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # jobs import tests.* from here
    executor = launch.slurm_executor(tmp_path / "jobs", local=True, timeout_min=10)
    jobs = launch.submit_shards(sharded, 2, executor, task_loader=tiny_task)
    computed = [job.result() for job in jobs]
    assert [len(c) for c in computed] == [2, 2]  # one task's two cells each
    assembled = launch.wait_and_assemble(sharded, jobs)
    assert assembled.computed == [] and len(assembled.reused) == 4
    assert outcome(assembled) == outcome(serial)
    assert table_text(sharded) == table_text(cfg)


def test_a_failed_shard_job_is_reported_with_its_log(tmp_path) -> None:
    pytest.importorskip("submitit")
    cfg = config(tmp_path, models=(str(tmp_path / "missing"),), tasks=("t1",))
    executor = launch.slurm_executor(tmp_path / "jobs", local=True, timeout_min=5)
    jobs = launch.submit_shards(cfg, 1, executor, task_loader=tiny_task)
    with pytest.raises(RuntimeError, match=r"(?s)shard job .* failed .*No model directory"):
        launch.wait_and_assemble(cfg, jobs)
    with pytest.raises(ValueError, match="at least 1"):
        launch.submit_shards(cfg, 0, executor)
