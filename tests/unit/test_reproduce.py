"""Reproduction runner on the tiny model: atomic cell records, resumption (only missing cells are
computed, dev-stage records skip the dev sweep), the shared passes equal the plain per-method
computation, table formatting, published numbers, the command line and the cost estimate."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import steerlens
from steerlens import (
    METHODS,
    austeer_mask,
    cli,
    collect_differences,
    encode_items,
    evaluate,
    sadi_mask,
    stats,
    steer,
)
from steerlens._io import atomic_write_text
from steerlens.experiments import estimate as est
from steerlens.experiments import records as rec
from steerlens.experiments import report
from steerlens.experiments import reproduce as rep
from steerlens.experiments.cells import RELEASED_METHODS
from steerlens.methods import published
from steerlens.sweep import choose_cell
from steerlens.tasks import Task
from steerlens.tune import fold_strength
from tests.checking import OFF_TYPE
from tests.reference import make_examples

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign", "ignore:.*pairs have identical")

CELL_METHODS = (
    "none",
    "sadi-head",
    "sadi-hidden",
    "sadi-head-fixed-vector",
    "austeer-ffn",
    "caa",
    "iti",
)
GRIDS = {
    "sadi-head": ((1, 2), (0.5, 2.0)),
    "sadi-hidden": ((2, 4), (1.0, 4.0)),
    "sadi-head-fixed-vector": ((1, 2), (1.0, 4.0)),
    "austeer-ffn": ((4, 16), (1.0, 8.0)),
    "iti": ((1, 2), (1.0, 4.0)),
}


def tiny_task(name: str, n_shot: int = 0, model=None) -> Task:
    seed = sum(map(ord, name)) + n_shot
    train = make_examples(16, seed=seed)
    dev = make_examples(10, seed=seed + 1)
    test = make_examples(12, seed=seed + 2)
    return Task(name, train, dev, test)


def config(tmp_path, **changes) -> rep.ReproduceConfig:
    base = rep.ReproduceConfig(
        models=(None,),
        tasks=("t1", "t2"),
        shots=(0,),
        n_train=None,
        n_dev=None,
        n_test=None,
        methods=CELL_METHODS,
        grids=dict(GRIDS),
        batch_size=4,
        n_boot=200,
        out=str(tmp_path / "out"),
    )
    return dataclasses.replace(base, **changes)


def run(cfg, model):
    return rep.run_reproduction(cfg, model=model, task_loader=tiny_task, progress=False)


def cell_files(cfg):
    return sorted((Path(cfg.out) / "cells").glob("*.json"))


# ------------------------------------------------------------------------------------------------
# records: atomic writes, tolerant reads
# ------------------------------------------------------------------------------------------------


def test_atomic_write_keeps_the_old_record_when_the_write_fails(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cells" / "a.json"
    atomic_write_text(path, '{"spec": {"x": 1}}')
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(path, '{"spec": {"x": 2}}')
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_read_record_treats_partial_or_foreign_files_as_missing(tmp_path) -> None:
    assert rec.read_record(tmp_path / "missing.json") is None
    (tmp_path / "cut.json").write_text('{"spec": {"a": 1}, "test": {"n"')
    assert rec.read_record(tmp_path / "cut.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert rec.read_record(tmp_path / "list.json") is None
    (tmp_path / "other.json").write_text('{"hello": 1}')
    assert rec.read_record(tmp_path / "other.json") is None
    (tmp_path / "no-test.json").write_text('{"spec": {}, "stage": "done"}')
    assert rec.read_record(tmp_path / "no-test.json") is None
    (tmp_path / "bad-test.json").write_text('{"spec": {}, "stage": "done", "test": {"n": 1}}')
    assert rec.read_record(tmp_path / "bad-test.json") is None
    (tmp_path / "dev.json").write_text('{"spec": {}, "stage": "dev", "method": "sadi-head"}')
    record = rec.read_record(tmp_path / "dev.json")
    assert record is not None and record.stage == "dev" and record.extra == {"spec": {}}


def test_a_record_survives_its_json_round_trip(tmp_path) -> None:
    record = rec.Record.from_json({**fake_record("sadi-head", "copa", "0110", "1111"), "spec": {}})
    rec.write_record(tmp_path / "r.json", record)
    again = rec.read_record(tmp_path / "r.json")
    assert again == record and again.test.correct == "0110" and again.extra["sizes"]["test"] == 4


# ------------------------------------------------------------------------------------------------
# resumption
# ------------------------------------------------------------------------------------------------


def test_resume_computes_only_the_missing_cell(tmp_path, model) -> None:
    cfg = config(tmp_path)
    first = run(cfg, model)
    n_cells = len(cfg.tasks) * len(CELL_METHODS)
    assert len(first.computed) == n_cells and not first.reused
    files = cell_files(cfg)
    assert len(files) == n_cells
    assert all(json.loads(f.read_text())["stage"] == "done" for f in files)

    again = run(cfg, model)
    assert again.computed == [] and len(again.reused) == n_cells

    victim = next(f for f in files if "__t2__0-shot__austeer-ffn__" in f.name)
    old = json.loads(victim.read_text())
    mtimes = {f: f.stat().st_mtime_ns for f in files if f != victim}
    victim.unlink()
    third = run(cfg, model)
    assert third.computed == [victim.name]
    assert {f: f.stat().st_mtime_ns for f in files if f != victim} == mtimes
    new = json.loads(victim.read_text())
    for key in ("setting", "strength", "dev_accuracy", "dev_restricted", "grid"):
        assert new[key] == old[key]
    assert new["test"]["correct"] == old["test"]["correct"]
    assert new["test"]["correct_restricted"] == old["test"]["correct_restricted"]


def outcome(result) -> list[tuple]:
    """What a run decided and scored, cell by cell (not how long it took)."""
    return [
        (r.task, r.method, json.dumps(r.setting), r.strength, r.dev_accuracy, json.dumps(r.grid))
        + (r.test.correct, r.test.correct_restricted, r.test.correct_paper)
        for r in result.records
    ]


def table_text(cfg) -> str:
    """results.md without its lines of timings."""
    text = (Path(cfg.out) / "results.md").read_text()
    return "\n".join(line for line in text.splitlines() if " s " not in line and "Time" not in line)


def test_workers_and_shards_give_the_serial_run(tmp_path, model) -> None:
    cfg = config(tmp_path, methods=("none", "sadi-head", "austeer-ffn"), tasks=("t1", "t2", "t3"))
    serial = run(cfg, model)

    par_cfg = dataclasses.replace(cfg, out=str(tmp_path / "workers"))
    par = rep.run_reproduction(
        par_cfg, model=model, task_loader=tiny_task, progress=False, workers=2
    )
    assert outcome(par) == outcome(serial)
    assert sorted(par.computed) == sorted(c.name for c in cell_files(cfg)) and not par.reused
    assert table_text(par_cfg) == table_text(cfg)

    shard_cfg = dataclasses.replace(cfg, out=str(tmp_path / "shards"))
    parts = [
        rep.run_reproduction(
            shard_cfg, model=model, task_loader=tiny_task, progress=False, shard=(i, 2)
        )
        for i in (0, 1)
    ]
    tasks = [{r.task for r in part.records} for part in parts]
    assert tasks == [{"t1", "t3"}, {"t2"}]  # whole groups, the i-th to shard i mod 2
    assembled = run(shard_cfg, model)
    assert assembled.computed == [] and len(assembled.reused) == len(serial.records)
    assert outcome(assembled) == outcome(serial)
    assert table_text(shard_cfg) == table_text(cfg)


def test_bad_shards_and_workers_are_refused(tmp_path, model) -> None:
    from steerlens.experiments.shards import parse_shard

    assert parse_shard("2/3") == (1, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(ValueError, match="outside"):
        rep.run_reproduction(config(tmp_path), model=model, task_loader=tiny_task, shard=(2, 2))
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--shard", "5/4", "--out", str(tmp_path)])


def test_shards_with_another_configuration_are_refused(tmp_path, model) -> None:
    cfg = config(tmp_path, tasks=("t1", "t2"), methods=("none", "sadi-head"))
    rep.run_reproduction(cfg, model=model, task_loader=tiny_task, progress=False, shard=(0, 2))
    other = dataclasses.replace(cfg, n_boot=300, device="cpu", batch_size=2)
    with pytest.raises(ValueError, match=r"another configuration \(differing: n_boot\)"):
        rep.run_reproduction(other, model=model, task_loader=tiny_task, shard=(1, 2))
    # the machine's own device and batch size may differ between shards
    same = dataclasses.replace(cfg, device="cpu", batch_size=2)
    rep.run_reproduction(same, model=model, task_loader=tiny_task, progress=False, shard=(1, 2))
    assert len(cell_files(cfg)) == 4
    # a serial run may change the configuration; it computes its own cells beside the old ones
    result = run(other, model)
    assert len(result.computed) == 4 and len(cell_files(cfg)) == 8


def test_a_cell_is_named_by_the_hash_of_its_whole_configuration(tmp_path, model, monkeypatch):
    from steerlens.experiments import cells

    cfg = config(tmp_path, tasks=("t1",), methods=("none", "sadi-head"))
    cell = cells.Cell(None, "t1", 0, "sadi-head")
    spec = cells.cell_spec(cfg, cell, 2)
    assert spec["steerlens"] == steerlens.__version__
    ids = {cells.spec_id(spec)}
    for changed in (
        dataclasses.replace(cfg, n_dev=5),
        dataclasses.replace(cfg, seed=1),
        dataclasses.replace(cfg, grids={**cfg.grids, "sadi-head": ((1,), (0.5,))}),
        dataclasses.replace(cfg, models=("other",)),
    ):
        ids.add(
            cells.spec_id(
                cells.cell_spec(changed, dataclasses.replace(cell, model=changed.models[0]), 2)
            )
        )
    monkeypatch.setattr(cells, "__version__", "9.9.9")
    ids.add(cells.spec_id(cells.cell_spec(cfg, cell, 2)))
    assert len(ids) == 6
    assert cell.filename("abc123").endswith("__t1__0-shot__sadi-head__abc123.json")
    # a record of another version is recomputed, not reused
    monkeypatch.undo()
    run(cfg, model)
    monkeypatch.setattr(cells, "__version__", "9.9.9")
    assert len(run(cfg, model).computed) == 2


def test_changed_settings_are_recomputed_not_reused(tmp_path, model) -> None:
    cfg = config(tmp_path, tasks=("t1",), methods=("none", "sadi-head"))
    run(cfg, model)
    changed = dataclasses.replace(cfg, grids={**cfg.grids, "sadi-head": ((1,), (0.5,))})
    result = run(changed, model)
    assert [name.split("__")[-2] for name in result.computed] == ["sadi-head"]
    assert [(c["setting"], c["strength"]) for c in result.records[1].grid] == [(1, 0.5)]


def test_an_interrupted_test_stage_resumes_from_the_dev_records(
    tmp_path, model, monkeypatch
) -> None:
    cfg = config(tmp_path, tasks=("t1",))
    reference = run(dataclasses.replace(cfg, out=str(tmp_path / "ref")), model)

    real_score = rep.score_on_test

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rep, "score_on_test", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, model)
    stages = {f.name: json.loads(f.read_text())["stage"] for f in cell_files(cfg)}
    assert set(stages.values()) == {"dev"} and len(stages) == len(CELL_METHODS)

    swept: list[object] = []
    real_choose = rep.choose_on_dev

    def spy(model_, dev, arms, **kwargs):
        swept.extend(arms)
        return real_choose(model_, dev, arms, **kwargs)

    monkeypatch.setattr(rep, "score_on_test", real_score)
    monkeypatch.setattr(rep, "choose_on_dev", spy)
    resumed = run(cfg, model)
    assert swept == []  # every dev sweep was reused
    assert len(resumed.computed) == len(CELL_METHODS)
    for a, b in zip(resumed.records, reference.records, strict=True):
        assert a.method == b.method
        assert (a.setting, a.strength) == (b.setting, b.strength)
        assert a.test.correct == b.test.correct


def test_a_crash_still_writes_the_tables_of_finished_cells(tmp_path, model, monkeypatch) -> None:
    cfg = config(tmp_path, methods=("none", "sadi-head"))
    real = rep._prepare
    calls = []

    def second_group_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(rep, "_prepare", second_group_fails)
    with pytest.raises(RuntimeError):
        run(cfg, model)
    text = (Path(cfg.out) / "results.md").read_text()
    assert "### t1, 0-shot" in text and "### t2" not in text


# ------------------------------------------------------------------------------------------------
# the shortcuts equal the plain computation
# ------------------------------------------------------------------------------------------------


def test_fold_strength_steers_exactly_like_the_strength(model, examples) -> None:
    diffs = collect_differences(model, examples, site=["head", "mlp_out"], progress=False)
    tokens = model.to_tokens("hello there:")
    for mask, strength in [
        (sadi_mask(diffs["head"], 2), 1.5),
        (austeer_mask(diffs["mlp_out"], 8), -3.0),
        (METHODS["iti"].grid(diffs["head"], (2,))[2], 2.0),
    ]:
        with steer(model, mask, strength):
            a = model(tokens)
        with steer(model, fold_strength(mask, strength), 1.0):
            b = model(tokens)
        assert torch.equal(a, b)


def tune_one(model, dev, test, masks, strengths):
    """The plain computation: every cell of one method steered on its own, then `choose`."""
    settings = list(masks)
    acc = np.zeros((len(settings), len(strengths)))
    res, pap = np.zeros_like(acc), np.zeros_like(acc)
    for i, s in enumerate(settings):
        for j, a in enumerate(strengths):
            with steer(model, masks[s], a):
                r = evaluate(model, dev, batch_size=4, progress=False)
            acc[i, j], res[i, j], pap[i, j] = r.accuracy, r.restricted, r.paper
    i, j = choose_cell({"accuracy": acc, "restricted": res, "paper": pap}, "accuracy")
    with steer(model, masks[settings[i]], strengths[j]):
        scored = evaluate(model, test, batch_size=4, progress=False)
    return settings[i], float(strengths[j]), acc[i, j], scored


@pytest.mark.filterwarnings("ignore:.*sign")
def test_runner_choices_equal_steering_each_cell_alone(tmp_path, model) -> None:
    cfg = config(tmp_path, tasks=("t1",))
    result = run(cfg, model)
    task = tiny_task("t1")
    diffs = collect_differences(
        model, task.train, site=["head", "mlp_out", "resid"], batch_size=2, progress=False
    )
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    plain_none = evaluate(model, test, batch_size=4, progress=False)
    assert result.records[0].test.correct == stats.flags_to_str(plain_none.correct)
    assert result.records[0].test.correct_restricted == stats.flags_to_str(
        plain_none.correct_restricted
    )
    for record in result.records[1:]:
        method = METHODS[record.method]
        settings, strengths = cfg.method_grid(record.method, model.cfg.n_layers)
        masks = method.grid(diffs[method.site], settings)
        setting, strength, dev_acc, scored = tune_one(model, dev, test, masks, strengths)
        assert (record.setting, record.strength) == (setting, strength), record.method
        assert record.dev_accuracy == pytest.approx(dev_acc)
        assert record.test.correct == stats.flags_to_str(scored.correct), record.method
        assert record.test.correct_restricted == stats.flags_to_str(scored.correct_restricted)
        assert record.n_activations == masks[setting].n_activations


@pytest.mark.filterwarnings("ignore:.*sign")
def test_released_methods_read_their_own_texts_and_clamp(tmp_path, model) -> None:
    """`reproduce --released`: each released method's masks come from the texts its authors'
    code writes (SADI: stripped prompt, a space, the answer; AUSteer: no separator), and the
    runner's choices equal steering each cell alone with those masks."""
    grids = {
        "sadi-head-released": ((1, 2), (4.0, 19.0)),
        "sadi-neuron-released": ((3, 10), (9.0, 29.0)),
        "austeer-ffn-released": ((2, 16), (8.0, 50.0)),
    }
    cfg = config(tmp_path, tasks=("t1",), methods=("none", *grids), grids=grids)
    result = run(cfg, model)
    task = tiny_task("t1")
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    for record in result.records[1:]:
        method = METHODS[record.method]
        diffs = collect_differences(
            model, task.train, site=method.site, pair_format=method.pair_format, progress=False
        )
        settings, strengths = cfg.method_grid(record.method, model.cfg.n_layers)
        masks = method.grid(diffs, settings)
        assert masks[settings[0]].info["pair_format"] == method.pair_format != "template"
        setting, strength, _, scored = tune_one(model, dev, test, masks, strengths)
        assert (record.setting, record.strength) == (setting, strength), record.method
        assert record.test.correct == stats.flags_to_str(scored.correct), record.method
    assert [r.method for r in result.records[1:]] == list(grids)


# ------------------------------------------------------------------------------------------------
# tables and statistics
# ------------------------------------------------------------------------------------------------


def fake_record(
    method: str, task: str, correct: str, restricted: str, paper: str | None = None, **extra
) -> dict:
    """A done cell record; `paper` flags default to the exact-token ones."""
    paper = correct if paper is None else paper
    n = len(correct)
    pap = paper.count("1") / n
    acc, res = correct.count("1") / n, restricted.count("1") / n
    return {
        "model": "M",
        "task": task,
        "format": "0-shot",
        "method": method,
        "site": "head",
        "setting_name": "K",
        "setting": 4,
        "strength": 0.5,
        "n_units": 4,
        "n_activations": 256,
        "n_pairs": 150,
        "sizes": {"train_pairs": 150, "dev": 50, "test": n},
        "dev_accuracy": 0.5,
        "dev_restricted": 0.6,
        "dev_paper": 0.5,
        "published": published(method, task),
        "seconds": 1.0,
        "test": {
            "n": n,
            "accuracy": acc,
            "accuracy_ci": [acc - 0.1, acc + 0.1],
            "restricted": res,
            "restricted_ci": [res - 0.1, res + 0.1],
            "paper": pap,
            "paper_ci": [pap - 0.1, pap + 0.1],
            "correct_paper": paper,
            "correct": correct,
            "correct_restricted": restricted,
        },
        **extra,
    }


def test_tables_show_both_protocols_deltas_and_published_numbers(tmp_path) -> None:
    records = [
        fake_record(
            "none",
            "copa",
            "0" * 40,
            "01" * 20,
            site="-",
            setting_name="-",
            setting=None,
            n_pairs=0,
            n_activations=0,
        ),
        fake_record("sadi-head", "copa", "1" * 40, "01" * 20),
        fake_record("austeer-ffn", "copa", "0" * 40, "00" * 20),
    ]
    cfg = config(tmp_path)
    records = [rec.Record.from_json(r) for r in records]
    rows = report.table_rows(records, n_boot=500)
    assert rows[0]["protocols"] == ""
    assert rows[1]["delta_accuracy"] == pytest.approx(1.0)
    assert rows[1]["protocols"] == "+/0/+"  # full-vocab gain, restricted unchanged: they disagree
    assert rows[2]["protocols"] == "0/-/0"
    assert rows[1]["delta_paper"] == pytest.approx(1.0) and rows[1]["test_paper"] == 1.0
    assert rows[1]["published"] == 78.80 and "SADI Table 1" in rows[1]["published_source"]
    text = rep.results_markdown(cfg, records)
    assert "| sadi-head | K=4, s=0.5 | 256 | 150 |" in text
    assert "100.0 (78.8)" in text  # summary matrix: ours (paper)
    assert "+100.0 [+100.0, +100.0]" in text
    assert "82.80" in text  # AUSteer's COPA number beside austeer-ffn
    csv_text = report.results_csv(rows)
    header = csv_text.splitlines()[0].split(",")
    assert header == list(report.CSV_COLUMNS)
    assert len(csv_text.strip().splitlines()) == 4
    assert math.isnan(rows[0]["delta_accuracy"])


def test_paired_interval_is_of_the_difference() -> None:
    a = np.array([1, 1, 1, 0] * 25)
    b = np.array([1, 1, 0, 0] * 25)
    d, lo, hi = stats.paired_bootstrap_ci(a, b, n_boot=500)
    assert d == pytest.approx(0.25) and lo <= 0.25 <= hi and lo > 0
    assert stats.verdict(lo, hi) == "+"
    assert stats.verdict(-0.2, -0.1) == "-" and stats.verdict(-0.1, 0.1) == "0"
    with pytest.raises(OFF_TYPE):
        stats.paired_bootstrap_ci(a, b[:10])


def test_published_numbers_match_methods_md() -> None:
    assert published("sadi-head", "storycloze") == (79.75, "SADI Table 1 (LLaMA2-7B-Chat)")
    assert published("none", "boolq")[0] == 70.52
    assert published("sadi-head-random", "copa")[0] == 72.40
    assert published("sadi-head-fixed-vector", "sst2")[0] == 91.43
    assert published("sadi-head-random", "boolq") is None  # not in SADI Table 4
    assert published("austeer-attention", "boolq")[0] == 76.27
    assert published("austeer-ffn", "winogrande")[0] == 53.28
    with pytest.raises(ValueError, match="Unknown method"):
        published("nope", "copa")


def reproduce_args(*argv: str):
    return cli.build_parser().parse_args(["reproduce", *argv])


def test_cli_arguments_build_the_config() -> None:
    cfg = cli.reproduce_config(reproduce_args("--quick", "--n-test", "all", "--out", "x"))
    assert cfg.n_test is None and cfg.n_dev == 16 and cfg.out == "x"
    assert cfg.methods == ("none", "sadi-head", "austeer-ffn") and cfg.tasks == ("sst2", "copa")
    cfg = cli.reproduce_config(reproduce_args("--tasks", "boolq", "--shots", "0", "4"))
    assert cfg.tasks == ("boolq",) and cfg.shots == (0, 4)
    assert cfg.n_test == rep.ReproduceConfig().n_test
    with pytest.raises(ValueError, match="Unknown methods"):
        rep.ReproduceConfig(methods=("none", "nope"))
    cfg = cli.reproduce_config(reproduce_args("--released", "--tasks", "copa"))
    assert cfg.methods == RELEASED_METHODS and cfg.metric == "paper" and cfg.n_train is None
    assert all(METHODS[m].released for m in cfg.methods if m != "none")
    assert not any(METHODS[m].released for m in rep.ReproduceConfig().methods if m != "none")
    cfg = cli.reproduce_config(reproduce_args("--released", "--quick"))
    assert cfg.methods == ("none", "sadi-head-released", "austeer-ffn-released")


# ------------------------------------------------------------------------------------------------
# cost estimate
# ------------------------------------------------------------------------------------------------


def test_count_forwards_adds_up_the_passes(tmp_path) -> None:
    cfg = config(
        tmp_path,
        methods=("none", "sadi-head", "austeer-ffn"),
        grids={"sadi-head": ((1, 2), (0.5, 1.0, 2.0)), "austeer-ffn": ((4,), (1.0, 2.0))},
    )
    counts = est.count_forwards(cfg, [10] * 5, [20] * 4, [30] * 3, n_layers=2, one_token=1.5)
    assert counts["collect"] == 50
    # dev: prefix pass + 6 one-token cells for SADI; baseline + 2 full cells for AUSteer
    assert counts["dev"] == pytest.approx(80 + 4 * 1.5 * 6 + 80 * 3)
    # test: one shared prefix pass (baseline = none) + a one-token cell, one full pass for AUSteer
    assert counts["test"] == pytest.approx(90 + 3 * 1.5 + 90)
    only_none = est.count_forwards(
        dataclasses.replace(cfg, methods=("none",)), [10], [20], [30], n_layers=2
    )
    assert only_none == {"collect": 0.0, "dev": 20.0, "test": 30.0}


def test_estimate_measures_every_group(tmp_path, model) -> None:
    cfg = config(tmp_path, methods=("none", "sadi-head"))
    rows = est.estimate(cfg, model, task_loader=tiny_task, calibrate=4)
    assert [(r["task"], r["format"]) for r in rows] == [("t1", "0-shot"), ("t2", "0-shot")]
    assert all(r["ms_per_token"] > 0 and r["seconds"]["dev"] > 0 for r in rows)
    assert "**all**" in est.estimate_table(rows)


def test_grid_option_and_reproduce_grids_fit_the_embedded_model_shape() -> None:
    assert cli.parse_grid("sadi-head=1,2,4:0.5,1") == ("sadi-head", ((1, 2, 4), (0.5, 1.0)))
    assert cli.parse_grid("caa=run") == ("caa", None)
    for bad in ("nope=1:1", "sadi-head=1,2", "sadi-head=a:1", "sadi-head"):
        with pytest.raises(ValueError):
            cli.parse_grid(bad)
    cfg = cli.reproduce_config(reproduce_args("--grid", "iti=run", "--grid", "sadi-head=2:1"))
    assert cfg.grids["sadi-head"] == ((2,), (1.0,))
    assert cfg.method_grid("iti", 30) == (METHODS["iti"].settings, METHODS["iti"].strengths)
    assert cfg.method_grid("caa", 30) == ((10, 15, 20), (0.5, 2.0))  # layers sized from the depth
    # SmolLM2-135M: 30 layers, 9 heads x 64, d_mlp 1536, d_model 576
    units = {
        "head": 30 * 9,
        "neuron": 30 * 1536,
        "gate": 30 * 1536,
        "mlp_out": 30 * 576,
        "resid": 30,
    }
    for name, method in METHODS.items():
        for which in ("run", "reproduce", "quick"):
            settings, strengths = method.grid_spec(which, 30)
            # scaling by 1 + s needs s > -1 to keep a unit's sign; CAA's vector may be subtracted
            adds = method.site == "resid"
            assert strengths and (adds or all(s > -1 for s in strengths)), name
            head_dims = method.site == "head" and method.unit == "dim"
            per_site = units[method.site] * (64 if head_dims else 1)
            assert settings and max(settings) <= per_site, (name, which)
