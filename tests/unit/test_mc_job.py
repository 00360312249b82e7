"""TruthfulQA through the drivers (`experiments.mc_job`, `steerlens run --task truthfulqa`) on the
tiny model and a small TruthfulQA file: each grid cell scored on dev by MC1 under `steer`, the
first best cell scored once on test, paired differences to no steering, files, CLI dispatch."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from steerlens import METHODS, cli, mc_scores, steer
from steerlens.experiments import McConfig, RunConfig, main_job, mc_job, run_job, run_mc
from steerlens.experiments._shared import method_differences
from steerlens.stats import paired_bootstrap_ci
from steerlens.tasks import load_task, truthfulqa_items

pytestmark = pytest.mark.filterwarnings("ignore:.*flip.* sign", "ignore:.*pairs have identical")

HEADER = ["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers"]
GRIDS = {"sadi-head": ((1, 2), (0.5, 2.0)), "austeer-ffn": ((4, 16), (1.0, 8.0))}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A TruthfulQA CSV of 410 rows (train 0-299, dev 300-399, test 400-409), short answers."""
    rows = [
        ["t", "c", f"Is {i} odd?", f"Best {i}", f"Best {i}; Also {i % 7}", f"No {i}; Bad {i % 5}"]
        for i in range(410)
    ]
    path = tmp_path / "truthfulqa" / "TruthfulQA.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([HEADER + ["Source"], *(r + ["s"] for r in rows)])
    return tmp_path


def config(data: Path, tmp_path: Path, **changes) -> McConfig:
    base = McConfig(
        data_dir=str(data),
        methods=tuple(GRIDS),
        grids=dict(GRIDS),
        n_train=12,
        n_dev=6,
        n_test=8,
        batch_size=8,
        n_boot=200,
        out=str(tmp_path / "mc"),
    )
    return dataclasses.replace(base, **changes)


def test_each_method_is_tuned_on_dev_by_mc1_and_scored_once(data, tmp_path, model) -> None:
    cfg = config(data, tmp_path)
    result = run_mc(cfg, model=model, progress=False)
    task = load_task("truthfulqa", data_dir=data).with_limits(12, 6, 8)
    dev, test = truthfulqa_items(task, "dev"), truthfulqa_items(task, "test")
    none = result.rows[0]
    assert none.method == "none" and none.mask is None
    plain = mc_scores(model, test, progress=False)
    assert torch.equal(none.test.mc1, plain.mc1) and torch.allclose(none.test.mc2, plain.mc2)
    assert none.dev["mc1"] == mc_scores(model, dev, progress=False).metric("mc1")
    methods = [METHODS[m] for m in GRIDS]
    diffs = method_differences(model, task, methods, batch_size=8)
    for row, method in zip(result.rows[1:], methods, strict=True):
        settings, strengths = GRIDS[method.name]
        masks = method.grid(diffs[method.differences_key], settings)
        expected = []
        for setting, mask in masks.items():
            for strength in strengths:
                with steer(model, mask, strength):
                    scores = mc_scores(model, dev, progress=False)
                expected.append((setting, strength, scores.metric("mc1"), scores.metric("mc2")))
        got = [(c["setting"], c["strength"], c["mc1"], c["mc2"]) for c in row.grid]
        # batches pad differently: equal to float rounding
        torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-6)
        best = max(c[2] for c in expected)
        first = next(c for c in expected if c[2] == best)  # ties: the first cell
        assert (row.setting, row.strength, row.dev["mc1"]) == first[:3]
        chosen = masks[row.setting]
        assert torch.equal(row.mask.layers, chosen.layers)
        assert torch.equal(row.mask.indices, chosen.indices)
        with steer(model, chosen, row.strength):
            on_test = mc_scores(model, test, progress=False)
        assert torch.equal(row.test.mc1, on_test.mc1)
        assert torch.allclose(row.test.mc2, on_test.mc2)
        summary = row.summary(none.test, n_boot=200, seed=0)
        d = paired_bootstrap_ci(
            on_test.mc1.float().numpy(), plain.mc1.float().numpy(), n_boot=200, seed=0
        )
        assert (summary["delta_mc1"], summary["delta_mc1_lo"], summary["delta_mc1_hi"]) == d
        assert summary["mc2_lo"] <= summary["mc2"] <= summary["mc2_hi"]
        assert row.n_pairs == 12


def test_files_hold_the_table_rows_and_masks(data, tmp_path, model) -> None:
    result = run_mc(config(data, tmp_path), model=model, progress=False)
    out = Path(result.out)
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "MC1" in text and "Δ MC1 vs none" in text and "test MC2 [95% CI]" in text
    none_line = next(line for line in text.splitlines() if line.startswith("| none |"))
    assert "33.41 / 51.07" in none_line  # SADI Table 3, beside the row
    assert result.table in text
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in payload["rows"]] == ["none", "sadi-head", "austeer-ffn"]
    head = payload["rows"][1]
    assert len(head["dev_grid"]) == 4 and len(head["test_mc1_flags"]) == 8
    assert head["test"]["n_test"] == 8 and "delta_mc2" in head["test"]
    assert payload["config"]["methods"] == ["sadi-head", "austeer-ffn"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "austeer-ffn.safetensors",
        "sadi-head.safetensors",
    ]


def test_ties_go_to_the_first_cell(data, tmp_path, model) -> None:
    model.W_U.data.zero_()  # every cell scores alike: the choice is the tie rule alone
    model.b_U.data.zero_()
    result = run_mc(config(data, tmp_path), model=model, progress=False)
    for row in result.rows[1:]:
        assert len({c["mc1"] for c in row.grid}) == 1
        settings, strengths = GRIDS[row.method]
        assert (row.setting, row.strength) == (settings[0], strengths[0])


def test_default_grids_are_small_and_registry_grids_on_request() -> None:
    cfg = McConfig()
    cells = {m: cfg.method_grid(m, 30) for m in cfg.methods}
    assert sum(len(s) * len(a) for s, a in cells.values()) == 26
    assert cells["caa"][0] == METHODS["caa"].default_settings(30)
    assert cells["sadi-head"] == ((1, 4), (0.5, 1.0))
    full = dataclasses.replace(cfg, grid="run", grids={})
    assert full.method_grid("sadi-neuron", 30) == METHODS["sadi-neuron"].grid_spec("run", 30)


def test_bad_configs_fail_before_the_model_loads(data, tmp_path, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before the task was validated")

    monkeypatch.setattr(mc_job, "load_model", forbidden)
    monkeypatch.setattr(main_job, "load_model", forbidden)
    with pytest.raises(ValueError, match="no per-item true answers"):
        run_mc(config(data, tmp_path, task="sentiment"))
    with pytest.raises(ValueError, match="MC1/MC2"):
        run_job(RunConfig(task="truthfulqa", data_dir=str(data), out=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="Unknown method"):
        McConfig(methods=("nope",))
    with pytest.raises(ValueError, match="grid must be"):
        McConfig(grid="huge")
    with pytest.raises(ValueError, match="n_dev must be positive"):
        McConfig(n_dev=0)
    with pytest.raises(ValueError, match="unknown methods"):
        McConfig(grids={"nope": ((1,), (1.0,))})


def _cli(*argv: str) -> int:
    return cli.main(["run", *argv])


def test_steerlens_run_truthfulqa_dispatches_to_the_mc_job(
    data, tmp_path, monkeypatch, model, capsys
) -> None:
    monkeypatch.setattr(mc_job, "load_model", lambda *a, **k: model)
    common = ["--task", "truthfulqa", "--data-dir", str(data), "--methods", "sadi-head"]
    common += ["--n-train", "8", "--n-dev", "4", "--n-test", "5", "--batch-size", "8"]
    assert _cli(*common, "--out", str(tmp_path / "a")) == 0
    assert "wrote" in capsys.readouterr().out
    rows = json.loads((tmp_path / "a" / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["none", "sadi-head"]
    assert len(rows[1]["dev_grid"]) == 4  # the small grid
    assert _cli(*common, "--grid", "run", "--out", str(tmp_path / "b")) == 0
    rows = json.loads((tmp_path / "b" / "results.json").read_text())["rows"]
    assert len(rows[1]["dev_grid"]) == 16  # run_job's grid for sadi-head (4 K x 4 strengths)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "truthfulqa", "--metric", "restricted"], "tuned on dev by MC1"),
        (["--task", "truthfulqa", "--answer-space", "auto"], "--answer-space does not apply"),
        (["--task", "sst2", "--grid", "run"], "--grid applies to truthfulqa only"),
    ],
)
def test_cli_misuse_is_one_line(capsys, monkeypatch, argv, message: str) -> None:
    monkeypatch.setattr(mc_job, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert _cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
