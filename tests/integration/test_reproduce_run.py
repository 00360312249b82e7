"""The reproduction runner end to end in quick mode on the embedded model and the real benchmark
files, and resumption after a deleted cell record (only that cell is recomputed)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from steerlens.experiments import quick_config, report, reproduce

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*flip.* sign")]

DATA_DIR = Path(
    os.environ.get("STEERLENS_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)


@pytest.fixture(scope="module")
def quick_run(embedded_model, tmp_path_factory):
    """One quick-mode run (2 tasks, 24 pairs, 16 dev, 24 test, SADI-head + AUSteer-FFN + none)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    out = tmp_path_factory.mktemp("reproduce") / "quick"
    config = quick_config(data_dir=str(DATA_DIR), out=str(out))
    clock = time.perf_counter()
    result = reproduce.run_reproduction(config, model=embedded_model, progress=False)
    return config, result, time.perf_counter() - clock


def test_quick_mode_runs_end_to_end(quick_run) -> None:
    config, result, seconds = quick_run
    n_cells = len(config.tasks) * len(config.methods)
    assert len(result.computed) == n_cells and not result.reused
    out = Path(config.out)
    records = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    assert len(records) == n_cells and {r["stage"] for r in records} == {"done"}
    for r in records:
        assert r["sizes"] == {"train_pairs": 24, "dev": 16, "test": 24}
        assert len(r["test"]["correct"]) == 24
        lo, hi = r["test"]["accuracy_ci"]
        assert 0.0 <= lo <= r["test"]["accuracy"] <= hi <= 1.0
        if r["method"] != "none":
            assert r["n_pairs"] == 24 and r["n_activations"] > 0
    text = (out / "results.md").read_text()
    for needle in (
        "## SmolLM2-135M-Instruct, 0-shot",
        "### sst2, 0-shot",
        "### copa, 0-shot",
        "restricted",
        "78.8",
        "Sizes (first rows of each split)",
    ):
        assert needle in text
    lines = (out / "results.csv").read_text().strip().splitlines()
    assert lines[0].split(",") == list(report.CSV_COLUMNS) and len(lines) == n_cells + 1
    assert seconds < 600, f"quick mode took {seconds:.0f} s"


def test_resume_recomputes_only_the_deleted_cell(quick_run, embedded_model) -> None:
    config, _, _ = quick_run
    cells = Path(config.out) / "cells"
    files = sorted(cells.glob("*.json"))
    victim = next(f for f in files if "__copa__0-shot__sadi-head__" in f.name)
    before = json.loads(victim.read_text())
    mtimes = {f.name: f.stat().st_mtime_ns for f in files if f != victim}
    victim.unlink()
    again = reproduce.run_reproduction(config, model=embedded_model, progress=False)
    assert again.computed == [victim.name]
    assert len(again.reused) == len(files) - 1
    assert {f.name: f.stat().st_mtime_ns for f in files if f != victim} == mtimes
    after = json.loads(victim.read_text())
    assert (after["setting"], after["strength"]) == (before["setting"], before["strength"])
    assert after["test"]["correct"] == before["test"]["correct"]
    # nothing left to do: a third run computes nothing
    third = reproduce.run_reproduction(
        dataclasses.replace(config), model=embedded_model, progress=False
    )
    assert third.computed == []


def test_quick_mode_in_two_shards_with_workers_equals_the_serial_run(quick_run, tmp_path) -> None:
    """`steerlens reproduce --quick` as two shards (the first with `--workers 2`: each worker
    loads the embedded model by name and tunes part of each task's methods), then `--assemble`,
    which loads no model: every decision, test flag and the table equal the serial run's."""
    config, serial, _ = quick_run
    sharded = dataclasses.replace(config, out=str(tmp_path))
    first = reproduce.run_reproduction(sharded, progress=False, workers=2, shard=(0, 2))
    second = reproduce.run_reproduction(sharded, progress=False, shard=(1, 2))
    assembled = reproduce.assemble(sharded)

    def outcome(result):
        return [
            (r.task, r.method, json.dumps(r.setting), r.strength, json.dumps(r.grid))
            + (r.test.correct, r.test.correct_restricted, r.test.correct_paper)
            for r in result.records
        ]

    assert {r.task for r in first.records} == {config.tasks[0]}
    assert {r.task for r in second.records} == {config.tasks[1]}
    assert len(first.computed) + len(second.computed) == len(serial.records)
    assert outcome(assembled) == outcome(serial) and assembled.computed == []

    def table(out):
        text = (Path(out) / "results.md").read_text()
        return [line for line in text.splitlines() if " s " not in line and "Time" not in line]

    assert table(sharded.out) == table(config.out)


def test_released_quick_mode_reads_the_released_texts(embedded_model, tmp_path) -> None:
    """`reproduce --quick --released` on COPA: SADI's clamp on masks from SADI's texts, AUSteer on
    masks from AUSteer's, tuned on the paper metric, all three protocols in the table."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    config = quick_config(released=True, data_dir=str(DATA_DIR), out=str(tmp_path), tasks=("copa",))
    result = reproduce.run_reproduction(config, model=embedded_model, progress=False)
    assert [r.method for r in result.records] == list(config.methods)
    assert config.metric == "paper"
    text = (tmp_path / "results.md").read_text()
    assert "sadi-head-released" in text and "the papers' string match" in text
    formats = {r.method: r.extra["spec"].get("pair_format") for r in result.records}
    assert formats == {
        "none": None,
        "sadi-head-released": "sadi",
        "austeer-ffn-released": "austeer",
    }
    for r in result.records:
        assert r.test is not None and 0.0 <= r.test.paper <= 1.0 and len(r.test.correct_paper) == 24


def test_math_on_svamp_generates_scores_and_reports_side_effects(embedded_model, tmp_path) -> None:
    """`steerlens math` end to end on SVAMP (a few items, short generations)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR}")
    from steerlens.experiments.generation_job import GenerationConfig, run_generation

    config = GenerationConfig(
        data_dir=str(DATA_DIR),
        methods=("sadi-head",),
        grids={"sadi-head": ((1,), (2.0,))},
        n_train=8,
        n_dev=2,
        n_test=3,
        max_new_tokens=12,
        out=str(tmp_path),
    )
    result = run_generation(config, model=embedded_model, progress=False)
    assert [r.method for r in result.rows] == ["none", "sadi-head"]
    for row in result.rows:
        summary = row.test.summary()
        assert summary["n"] == 3 and summary["median_perplexity"] > 1.0
        assert all(isinstance(t, str) for t in row.test.generation.texts)
    assert "| none |" in (tmp_path / "results.md").read_text()
