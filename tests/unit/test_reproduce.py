"""Reproduction runner and ablations on the tiny model: atomic cell records, resumption (only
missing cells are computed, dev-stage records skip the dev sweep), the shared-pass shortcuts
equal the plain per-method computation, table formatting, published numbers, ablation shapes."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os

import numpy as np
import pytest
import torch

from steerlens import austeer_mask, collect_differences, encode_items, sadi_mask, steer
from steerlens.tasks import Task
from tests.reference import make_examples

rep = importlib.import_module("steerlens.reproduce")
abl = importlib.import_module("steerlens.ablations")

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign", "ignore:.*pairs have identical")

METHODS = (
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
        models=(None,), tasks=("t1", "t2"), shots=(0,), n_train=None, n_dev=None, n_test=None,
        methods=METHODS, grids=dict(GRIDS), batch_size=4, n_boot=200, out=str(tmp_path / "out"),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def run(cfg, model):
    return rep.run_reproduction(cfg, model=model, task_loader=tiny_task, progress=False)


def cell_files(cfg):
    return sorted((rep.Path(cfg.out) / "cells").glob("*.json"))


# ------------------------------------------------------------------------------------------------
# records: atomic writes, tolerant reads
# ------------------------------------------------------------------------------------------------


def test_atomic_write_keeps_the_old_record_when_the_write_fails(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cells" / "a.json"
    rep.write_record(path, {"spec": {"x": 1}, "stage": "done", "test": {"n": 1}})
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rep.os, "replace", boom)
    with pytest.raises(OSError):
        rep.write_record(path, {"spec": {"x": 2}, "stage": "done", "test": {"n": 2}})
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_read_record_treats_partial_or_foreign_files_as_missing(tmp_path) -> None:
    assert rep.read_record(tmp_path / "missing.json") is None
    (tmp_path / "cut.json").write_text('{"spec": {"a": 1}, "test": {"n"')
    assert rep.read_record(tmp_path / "cut.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert rep.read_record(tmp_path / "list.json") is None
    (tmp_path / "other.json").write_text('{"hello": 1}')
    assert rep.read_record(tmp_path / "other.json") is None
    (tmp_path / "no-test.json").write_text('{"spec": {}, "stage": "done"}')
    assert rep.read_record(tmp_path / "no-test.json") is None
    (tmp_path / "dev.json").write_text('{"spec": {}, "stage": "dev"}')
    assert rep.read_record(tmp_path / "dev.json") == {"spec": {}, "stage": "dev"}


# ------------------------------------------------------------------------------------------------
# resumption
# ------------------------------------------------------------------------------------------------


def test_resume_computes_only_the_missing_cell(tmp_path, model) -> None:
    cfg = config(tmp_path)
    first = run(cfg, model)
    n_cells = len(cfg.tasks) * len(METHODS)
    assert len(first["computed"]) == n_cells and not first["reused"]
    files = cell_files(cfg)
    assert len(files) == n_cells
    assert all(json.loads(f.read_text())["stage"] == "done" for f in files)

    again = run(cfg, model)
    assert again["computed"] == [] and len(again["reused"]) == n_cells

    victim = next(f for f in files if f.name.endswith("__t2__0-shot__austeer-ffn.json"))
    old = json.loads(victim.read_text())
    mtimes = {f: f.stat().st_mtime_ns for f in files if f != victim}
    victim.unlink()
    third = run(cfg, model)
    assert third["computed"] == [victim.name]
    assert {f: f.stat().st_mtime_ns for f in files if f != victim} == mtimes
    new = json.loads(victim.read_text())
    for key in ("setting", "strength", "dev_accuracy", "dev_restricted", "grid"):
        assert new[key] == old[key]
    assert new["test"]["correct"] == old["test"]["correct"]
    assert new["test"]["correct_restricted"] == old["test"]["correct_restricted"]


def test_changed_settings_are_recomputed_not_reused(tmp_path, model) -> None:
    cfg = config(tmp_path, tasks=("t1",), methods=("none", "sadi-head"))
    run(cfg, model)
    changed = dataclasses.replace(cfg, grids={**cfg.grids, "sadi-head": ((1,), (0.5,))})
    result = run(changed, model)
    assert [name.split("__")[-1] for name in result["computed"]] == ["sadi-head.json"]
    assert result["records"][1]["grid"] == [
        {"setting": 1, "strength": 0.5, "accuracy": pytest.approx(result["records"][1]["grid"][0]["accuracy"]),
         "restricted": pytest.approx(result["records"][1]["grid"][0]["restricted"])}
    ]  # fmt: skip


def test_an_interrupted_test_stage_resumes_from_the_dev_records(
    tmp_path, model, monkeypatch
) -> None:
    cfg = config(tmp_path, tasks=("t1",))
    reference = run(dataclasses.replace(cfg, out=str(tmp_path / "ref")), model)

    real_test_stage = rep._test_stage

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rep, "_test_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, model)
    stages = {f.name: json.loads(f.read_text())["stage"] for f in cell_files(cfg)}
    assert set(stages.values()) == {"dev"} and len(stages) == len(METHODS) - 1  # none: no dev file

    swept: list[str] = []
    real_dev_stage = rep._dev_stage

    def spy(config_, model_, group, cells, done):
        swept.extend(c.method for c in cells)
        return real_dev_stage(config_, model_, group, cells, done)

    monkeypatch.setattr(rep, "_test_stage", real_test_stage)
    monkeypatch.setattr(rep, "_dev_stage", spy)
    resumed = run(cfg, model)
    assert swept == []  # every dev sweep was reused
    assert len(resumed["computed"]) == len(METHODS)
    for a, b in zip(resumed["records"], reference["records"], strict=True):
        assert a["method"] == b["method"]
        assert (a["setting"], a["strength"]) == (b["setting"], b["strength"])
        assert a["test"]["correct"] == b["test"]["correct"]


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
    text = (rep.Path(cfg.out) / "results.md").read_text()
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
        (rep._methods(model.cfg.n_layers)["iti"].grid(diffs, (2,))[2], 2.0),
    ]:
        with steer(model, mask, strength):
            a = model(tokens)
        with steer(model, rep.fold_strength(mask, strength), 1.0):
            b = model(tokens)
        assert torch.equal(a, b)


def test_runner_choices_equal_tune_and_score_per_method(tmp_path, model) -> None:
    cfg = config(tmp_path, tasks=("t1",))
    result = run(cfg, model)
    task = tiny_task("t1")
    diffs = collect_differences(model, task.train, site=["head", "mlp_out", "resid"],
                                batch_size=2, progress=False)  # fmt: skip
    dev, test = encode_items(model, task.dev), encode_items(model, task.test)
    table = rep._methods(model.cfg.n_layers)
    from steerlens import evaluate

    plain_none = evaluate(model, test, batch_size=4, progress=False)
    assert result["records"][0]["test"]["correct"] == rep.flags_to_str(plain_none.correct)
    assert result["records"][0]["test"]["correct_restricted"] == rep.flags_to_str(
        plain_none.correct_restricted
    )
    for record in result["records"][1:]:
        method = rep.method_grid(cfg, table[record["method"]])
        plain = rep.tune_and_score(model, dev, test, method.grid(diffs, method.settings),
                                   method.strengths, batch_size=4, n_boot=200)  # fmt: skip
        assert (record["setting"], record["strength"]) == (plain["setting"], plain["strength"])
        assert record["dev_accuracy"] == pytest.approx(plain["dev_accuracy"])
        assert record["test"]["correct"] == plain["test"]["correct"], record["method"]
        assert record["test"]["correct_restricted"] == plain["test"]["correct_restricted"]
        assert record["n_activations"] == plain["n_activations"]


def test_choose_breaks_ties_by_the_other_protocol_then_grid_order() -> None:
    primary = np.array([[0.0, 0.0], [0.0, 0.0]])
    secondary = np.array([[0.5, 0.7], [0.7, 0.1]])
    assert rep.choose(primary, secondary) == (0, 1)
    assert rep.choose(np.zeros((2, 2)), np.zeros((2, 2))) == (0, 0)
    assert rep.choose(np.array([[0.1, 0.3], [0.3, 0.2]]), np.zeros((2, 2))) == (0, 1)


# ------------------------------------------------------------------------------------------------
# tables and statistics
# ------------------------------------------------------------------------------------------------


def fake_record(method: str, task: str, correct: str, restricted: str, **extra) -> dict:
    n = len(correct)
    acc, res = correct.count("1") / n, restricted.count("1") / n
    return {
        "model": "M", "task": task, "format": "0-shot", "method": method, "site": "head",
        "setting_name": "K", "setting": 4, "strength": 0.5, "n_units": 4, "n_activations": 256,
        "n_pairs": 150, "sizes": {"train_pairs": 150, "dev": 50, "test": n},
        "dev_accuracy": 0.5, "dev_restricted": 0.6, "published": rep.published(method, task),
        "seconds": 1.0,
        "test": {"n": n, "accuracy": acc, "accuracy_ci": [acc - 0.1, acc + 0.1], "restricted": res,
                 "restricted_ci": [res - 0.1, res + 0.1], "correct": correct,
                 "correct_restricted": restricted},
        **extra,
    }  # fmt: skip


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
        ),  # fmt: skip
        fake_record("sadi-head", "copa", "1" * 40, "01" * 20),
        fake_record("austeer-ffn", "copa", "0" * 40, "00" * 20),
    ]
    cfg = config(tmp_path)
    rows = rep.table_rows(records, n_boot=500)
    assert rows[0]["protocols"] == ""
    assert rows[1]["delta_accuracy"] == pytest.approx(1.0)
    assert rows[1]["protocols"] == "+/0"  # full-vocab gain, restricted unchanged: they disagree
    assert rows[2]["protocols"] == "0/-"
    assert rows[1]["published"] == 78.80 and "SADI Table 1" in rows[1]["published_source"]
    text = rep.results_markdown(cfg, records)
    assert "| sadi-head | K=4, s=0.5 | 256 | 150 |" in text
    assert "100.0 (78.8)" in text  # summary matrix: ours (paper)
    assert "+100.0 [+100.0, +100.0]" in text
    assert "82.80" in text  # AUSteer's COPA number beside austeer-ffn
    csv_text = rep.results_csv(cfg, records)
    header = csv_text.splitlines()[0].split(",")
    assert header == list(rep.CSV_COLUMNS)
    assert len(csv_text.strip().splitlines()) == 4
    assert math.isnan(rows[0]["delta_accuracy"])


def test_paired_interval_is_of_the_difference() -> None:
    a = np.array([1, 1, 1, 0] * 25)
    b = np.array([1, 1, 0, 0] * 25)
    d, lo, hi = rep.paired_bootstrap_ci(a, b, n_boot=500)
    assert d == pytest.approx(0.25) and lo <= 0.25 <= hi and lo > 0
    assert rep.verdict(lo, hi) == "+"
    assert rep.verdict(-0.2, -0.1) == "-" and rep.verdict(-0.1, 0.1) == "0"
    with pytest.raises(ValueError):
        rep.paired_bootstrap_ci(a, b[:10])


def test_published_numbers_match_methods_md() -> None:
    assert rep.published("sadi-head", "storycloze") == (79.75, "SADI Table 1 (LLaMA2-7B-Chat)")
    assert rep.published("none", "boolq")[0] == 70.52
    assert rep.published("sadi-head-random", "copa")[0] == 72.40
    assert rep.published("sadi-head-fixed-vector", "sst2")[0] == 91.43
    assert rep.published("sadi-head-random", "boolq") is None  # not in SADI Table 4
    assert rep.published("austeer-attention", "boolq")[0] == 76.27
    assert rep.published("austeer-ffn", "winogrande")[0] == 53.28
    assert set(rep.PUBLISHED) <= set(rep.ALL_METHODS)


def test_cli_arguments_build_the_config() -> None:
    parser = argparse.ArgumentParser()
    rep.add_parser(parser.add_subparsers())
    args = parser.parse_args(["reproduce", "--quick", "--n-test", "all", "--out", "x"])
    cfg = rep.config_from_args(args)
    assert cfg.n_test is None and cfg.n_dev == 16 and cfg.out == "x"
    assert cfg.methods == ("none", "sadi-head", "austeer-ffn") and cfg.tasks == ("sst2", "copa")
    args = parser.parse_args(["reproduce", "--tasks", "boolq", "--shots", "0", "4"])
    cfg = rep.config_from_args(args)
    assert (
        cfg.tasks == ("boolq",)
        and cfg.shots == (0, 4)
        and cfg.n_test == rep.ReproduceConfig().n_test
    )
    with pytest.raises(ValueError, match="Unknown methods"):
        rep.ReproduceConfig(methods=("none", "nope"))


# ------------------------------------------------------------------------------------------------
# ablations
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def task() -> Task:
    return tiny_task("ab")


def test_steer_less_curve_rows_and_figure(model, task) -> None:
    rows = abl.steer_less_curve(model, task, ks=(1, 4, 1000), strengths=(1.0, 4.0), batch_size=4,
                                n_boot=100)  # fmt: skip
    assert [r["k"] for r in rows] == [0, 1, 4, 64]  # k is capped at the 64 units of the tiny model
    assert rows[0]["n_activations"] == 0 and rows[-1]["n_activations"] == 64
    for r in rows:
        lo, hi = r["test"]["accuracy_ci"]
        assert lo <= r["test"]["accuracy"] <= hi
        assert "correct" not in r["test"]
    assert "delta_accuracy" not in rows[0]["test"]  # the unsteered row
    for r in rows[1:]:  # paired with the unsteered row on the same items
        for metric in ("accuracy", "restricted"):
            d, lo, hi = r["test"][f"delta_{metric}"]
            assert lo <= d <= hi
            assert d == pytest.approx(r["test"][metric] - rows[0]["test"][metric])
    json.dumps(rows)  # plain data
    fig = abl.figure_steer_less(rows)
    assert fig.layout.xaxis.type == "log" and len(fig.data) == 2


def test_suppression_mask_takes_the_least_important_units(model, task) -> None:
    diffs = collect_differences(model, task.train, site="mlp_out", progress=False)
    top = austeer_mask(diffs, 64)
    low = abl.suppression_mask(diffs, 5)
    assert low.unit_set() == set(
        list(zip(top.layers.tolist(), top.indices.tolist(), strict=True))[-5:]
    )
    assert torch.equal(low.weights, torch.ones(5))
    result = abl.promotion_vs_suppression(model, task, ks=(4,), alphas=(1.0,), fractions=(0.5,),
                                          factors=(0.5,), diffs=diffs, batch_size=4, n_boot=100)  # fmt: skip
    assert list(result) == ["vanilla", "suppression", "promotion"]
    assert result["suppression"]["factor"] == pytest.approx(0.5)
    assert result["suppression"]["n_units"] == 32
    abl.figure_promotion_vs_suppression(result)


def test_adaptive_vs_fixed_uses_the_same_units(model, task) -> None:
    result = abl.adaptive_vs_fixed(model, task, ks=(4,), strengths=(2.0,), batch_size=4, n_boot=100,
                                   variants=("adaptive", "fixed", "fixed-signed"))  # fmt: skip
    assert list(result) == ["vanilla", "adaptive", "fixed", "fixed-signed"]
    assert {result[v]["n_units"] for v in ("adaptive", "fixed", "fixed-signed")} == {4}
    mask = austeer_mask(collect_differences(model, task.train, site="mlp_out", progress=False), 4)
    fixed = abl.fixed_strength(mask, signed=True)
    assert torch.equal(fixed.weights.abs(), torch.ones(4))
    assert torch.equal(torch.sign(fixed.weights), torch.sign(mask.weights))
    assert len(abl.figure_adaptive_vs_fixed(result).data) == 2


def test_pairs_curve_subsets_pairs(model, task) -> None:
    grids = {"sadi-head": ((1, 2), (0.5,)), "austeer-ffn": ((4,), (2.0,))}
    rows = abl.pairs_curve(model, task, n_pairs=(4, 8, 100), seeds=(0, 1), grids=grids,
                           batch_size=4, n_boot=100)  # fmt: skip
    steered = [r for r in rows if r["method"] != "none"]
    assert sorted({r["n_pairs"] for r in steered}) == [4, 8, 16]
    assert {(r["n_pairs"], r["seed"]) for r in steered if r["method"] == "sadi-head"} == {
        (4, 0),
        (4, 1),
        (8, 0),
        (8, 1),
        (16, 0),
    }
    assert len(abl.figure_pairs(rows).data) == 4


def test_save_writes_a_figure(tmp_path, model, task) -> None:
    rows = [{"k": 0, "site": "mlp_out", "test": {"accuracy": 0.5, "accuracy_ci": [0.4, 0.6],
             "restricted": 0.5, "restricted_ci": [0.4, 0.6]}},
            {"k": 3, "site": "mlp_out", "test": {"accuracy": 0.6, "accuracy_ci": [0.5, 0.7],
             "restricted": 0.55, "restricted_ci": [0.45, 0.65]}}]  # fmt: skip
    paths = abl.save(abl.figure_steer_less(rows), tmp_path / "figs" / "curve")
    assert any(p.suffix == ".html" and p.exists() for p in paths)
    assert os.path.getsize(next(p for p in paths if p.suffix == ".html")) > 0


# ------------------------------------------------------------------------------------------------
# cost estimate
# ------------------------------------------------------------------------------------------------


def test_last_token_methods_match_the_masks_they_build(model, examples) -> None:
    diffs = collect_differences(model, examples, site=["head", "neuron", "mlp_out", "resid"],
                                progress=False)  # fmt: skip
    for name, method in rep._methods(model.cfg.n_layers).items():
        settings = (1,) if method.setting_name == "K" else method.settings[:1]
        mask = next(iter(method.grid(diffs, settings).values()))
        assert (mask.positions == "last") == (name in rep.LAST_TOKEN_METHODS), name


def test_count_forwards_adds_up_the_passes(tmp_path) -> None:
    cfg = config(tmp_path, methods=("none", "sadi-head", "austeer-ffn"),
                 grids={"sadi-head": ((1, 2), (0.5, 1.0, 2.0)), "austeer-ffn": ((4,), (1.0, 2.0))})  # fmt: skip
    counts = rep.count_forwards(cfg, [10] * 5, [20] * 4, [30] * 3, one_token=1.5)
    assert counts["collect"] == 50
    # dev: prefix pass + 6 one-token cells for SADI; baseline + 2 full cells for AUSteer
    assert counts["dev"] == pytest.approx(80 + 4 * 1.5 * 6 + 80 * 3)
    # test: one shared prefix pass (baseline = none) + a one-token cell, one full pass for AUSteer
    assert counts["test"] == pytest.approx(90 + 3 * 1.5 + 90)
    only_none = rep.count_forwards(dataclasses.replace(cfg, methods=("none",)), [10], [20], [30])
    assert only_none == {"collect": 0.0, "dev": 20.0, "test": 30.0}


def test_estimate_measures_every_group(tmp_path, model) -> None:
    cfg = config(tmp_path, methods=("none", "sadi-head"))
    rows = rep.estimate(cfg, model, task_loader=tiny_task, calibrate=4)
    assert [(r["task"], r["format"]) for r in rows] == [("t1", "0-shot"), ("t2", "0-shot")]
    assert all(r["ms_per_token"] > 0 and r["seconds"]["dev"] > 0 for r in rows)
    assert "**all**" in rep.estimate_table(rows)


def test_tune_many_equals_one_arm_at_a_time(model, task) -> None:
    from steerlens import evaluate

    diffs = collect_differences(model, task.train, site=["head", "mlp_out"], progress=False)
    arms = {
        "sadi": ({k: sadi_mask(diffs["head"], k) for k in (1, 2)}, (0.5, 4.0)),
        "au": ({k: austeer_mask(diffs["mlp_out"], k) for k in (4, 16)}, (2.0, 8.0)),
        "au-fixed": ({4: abl.fixed_strength(austeer_mask(diffs["mlp_out"], 4))}, (2.0,)),
    }
    splits = abl.Splits.of(model, task)
    many = abl.tune_many(model, splits, arms, batch_size=4, n_boot=100)
    for arm, (masks, strengths) in arms.items():
        one = rep.tune_and_score(model, splits.dev, splits.test, masks, strengths, batch_size=4,
                                 n_boot=100)  # fmt: skip
        assert (many[arm]["setting"], many[arm]["strength"]) == (one["setting"], one["strength"])
        for key in ("accuracy", "restricted", "accuracy_ci", "restricted_ci"):
            assert many[arm]["test"][key] == pytest.approx(one["test"][key]), (arm, key)
    plain = evaluate(model, splits.test, batch_size=4, progress=False)
    assert splits.vanilla["test"]["accuracy"] == pytest.approx(plain.accuracy)
    assert splits.vanilla["test"]["restricted"] == pytest.approx(plain.restricted)


def test_grid_option_and_reproduce_grids_fit_the_embedded_model_shape() -> None:
    assert rep.parse_grid("sadi-head=1,2,4:0.5,1") == ("sadi-head", ((1, 2, 4), (0.5, 1.0)))
    assert rep.parse_grid("caa=run") == ("caa", None)
    for bad in ("nope=1:1", "sadi-head=1,2", "sadi-head=a:1", "sadi-head"):
        with pytest.raises(ValueError):
            rep.parse_grid(bad)
    parser = argparse.ArgumentParser()
    rep.add_parser(parser.add_subparsers())
    cfg = rep.config_from_args(parser.parse_args(["reproduce", "--grid", "iti=run",
                                                  "--grid", "sadi-head=2:1"]))  # fmt: skip
    assert "iti" not in cfg.grids and cfg.grids["sadi-head"] == ((2,), (1.0,))
    # SmolLM2-135M: 30 layers, 9 heads x 64, d_mlp 1536, d_model 576
    units = {"head": 30 * 9, "neuron": 30 * 1536, "mlp_out": 30 * 576}
    for name, (settings, strengths) in rep.REPRODUCE_GRIDS.items():
        method = rep._methods(30)[name]
        assert strengths and all(s > -1 for s in strengths)
        if settings is not None and method.setting_name == "K":
            per_site = units[method.site] * (64 if name.startswith("austeer-attention") else 1)
            assert max(settings) <= per_site, name


def test_run_ablations_writes_data_and_figures(tmp_path, model, task, monkeypatch) -> None:
    saved = []
    monkeypatch.setattr(abl, "save", lambda fig, path: saved.append(path) or [path])
    results = abl.run_ablations(model, task, tmp_path / "abl", ks=(1, 8), n_pairs=(4, 16),
                                figures_dir=tmp_path / "figs", batch_size=4, n_boot=50,
                                quick=True)  # fmt: skip
    assert list(results) == list(abl.ABLATIONS)
    for name in abl.ABLATIONS:
        record = json.loads((tmp_path / "abl" / f"ablation-{name}-ab-0shot.json").read_text())
        assert record["ablation"] == name and record["data"]
    assert [p.name for p in saved] == [f"ablation-{n}-ab-0shot" for n in abl.ABLATIONS]
