"""Transfer (`experiments.transfer`, `steerlens transfer`) on the tiny model: each source's mask
and strength chosen on its own dev split, scored on every target's test split beside the
unsteered model, the source x target tables, loading by name and the command line."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from steerlens import METHODS, cli, encode_items, evaluate, steer
from steerlens.experiments import TransferConfig, run_transfer
from steerlens.experiments import transfer as tr
from steerlens.experiments._shared import method_differences
from steerlens.stats import paired_bootstrap_ci
from steerlens.tasks import Task
from steerlens.tune import Grid, choose_on_dev
from tests.reference import make_examples

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*flip.* sign", "ignore:.*pairs have identical", "ignore:.*exceed.*context"
)


def tiny_task(name: str, model=None) -> Task:
    seed = sum(map(ord, name))
    return Task(
        name,
        make_examples(14, seed=seed),
        make_examples(8, seed=seed + 1),
        make_examples(10, seed=seed + 2),
    )


def config(tmp_path: Path, **changes) -> TransferConfig:
    base = TransferConfig(
        tasks=("src-a", "src-b"),
        method="sadi-head",
        grid="quick",
        batch_size=4,
        n_boot=200,
        out=str(tmp_path / "transfer"),
    )
    return dataclasses.replace(base, **changes)


def test_each_source_is_tuned_on_its_dev_and_scored_on_every_target(tmp_path, model) -> None:
    cfg = config(tmp_path)
    result = run_transfer(cfg, model=model, task_loader=tiny_task, progress=False)
    method = METHODS["sadi-head"]
    for source in cfg.tasks:
        task = tiny_task(source)
        diffs = method_differences(model, task, [method], batch_size=4)["head"]
        settings, strengths = method.grid_spec("quick", model.cfg.n_layers)
        _, chosen = choose_on_dev(
            model, encode_items(model, task.dev), {0: Grid(method.grid(diffs, settings), strengths)}
        )
        mine = result.sources[source]
        assert (mine.choice.setting, mine.choice.strength) == (
            chosen[0].setting,
            chosen[0].strength,
        )
        assert mine.n_pairs == 14
        for target in cfg.tasks:
            items = encode_items(model, tiny_task(target).test)
            with steer(model, chosen[0].mask, chosen[0].strength):
                expected = evaluate(model, items, progress=False)
            got = result.scores[(source, target)]
            assert torch.equal(got.correct, expected.correct)
            assert torch.equal(got.correct_restricted, expected.correct_restricted)
    for target in cfg.tasks:
        base = evaluate(model, encode_items(model, tiny_task(target).test), progress=False)
        assert torch.equal(result.unsteered[target].correct_restricted, base.correct_restricted)


def test_rows_hold_tests_intervals_and_paired_differences(tmp_path, model) -> None:
    cfg = config(tmp_path, targets=("src-b", "other"))
    result = run_transfer(cfg, model=model, task_loader=tiny_task, progress=False)
    rows = result.rows
    assert len(rows) == 2 * 3 * 3  # targets x (none + 2 sources) x protocols
    by = {(r["source"], r["target"], r["protocol"]): r for r in rows}
    for source in cfg.tasks:
        for target in ("src-b", "other"):
            for proto in ("accuracy", "restricted"):
                row = by[(source, target, proto)]
                mine = result.scores[(source, target)].flags(proto).numpy()
                theirs = result.unsteered[target].flags(proto).numpy()
                d = paired_bootstrap_ci(mine, theirs, n_boot=200, seed=0)
                assert (row["delta"], row["delta_lo"], row["delta_hi"]) == d
                assert row["test"] == pytest.approx(mine.mean())
                assert row["unsteered"] == pytest.approx(theirs.mean())
                assert row["test_lo"] <= row["test"] <= row["test_hi"]
                assert row["n_test"] == 10 and row["method"] == "sadi-head"
    none = by[("none", "other", "accuracy")]
    assert math.isnan(none["delta"]) and none["setting"] is None

    out = Path(result.out)
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "| source \\ target | src-b | other |" in text
    assert "## Test accuracy, `full`" in text and "## Test accuracy, `restr.`" in text
    assert "Δ vs the unsteered target, `restr.`" in text
    assert "## Chosen on the source's dev split" in text and "| src-a | K=" in text
    with open(out / "results.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and list(table[0]) == list(tr.CSV_COLUMNS)
    assert json.loads((out / "config.json").read_text())["config"]["method"] == "sadi-head"
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "src-a.safetensors",
        "src-b.safetensors",
    ]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tasks": ("xnli-en", "truthfulqa")}, "steerlens run --task truthfulqa"),
        ({"tasks": ("a", "a")}, "tasks listed twice"),
        ({"tasks": ()}, "at least one of tasks"),
        ({"targets": ()}, "at least one of targets"),
        ({"method": "nope"}, "Unknown method"),
        ({"grid": "huge"}, "grid must be"),
        ({"n_test": 0}, "n_test must be positive"),
    ],
)
def test_bad_configs(tmp_path, changes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **changes)


def _copa_rows(kind: str, n: int) -> list[dict]:
    return [
        {
            "premise": f"{kind} {i}",
            "choice1": "a",
            "choice2": "b",
            "question": ("cause", "effect")[i % 2],
            "label": i % 2,
        }
        for i in range(n)
    ]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for path, rows in (
        ("copa/train.jsonl", _copa_rows("train", 400)),
        ("copa/test.jsonl", _copa_rows("test", 6)),
        ("xcopa/fr.train.jsonl", _copa_rows("entrainement", 400)),
        ("xcopa/fr.test.jsonl", _copa_rows("essai", 6)),
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_cli_runs_copa_to_xcopa_fr_by_name(data, tmp_path, monkeypatch, model, capsys) -> None:
    monkeypatch.setattr(tr, "load_model", lambda *a, **k: model)
    argv = ["transfer", "--tasks", "copa", "xcopa-fr", "--data-dir", str(data), "--grid", "quick"]
    argv += ["--n-train", "6", "--n-dev", "4", "--n-test", "5", "--batch-size", "8"]
    assert cli.main([*argv, "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    with open(tmp_path / "o" / "results.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pairs = {(r["source"], r["target"]) for r in rows}
    assert pairs == {(s, t) for s in ("none", "copa", "xcopa-fr") for t in ("copa", "xcopa-fr")}
    assert {r["n_test"] for r in rows} == {"5"}


def test_cli_config_and_errors(data, capsys, monkeypatch) -> None:
    assert "transfer" in cli.COMMANDS
    args = cli.build_parser().parse_args(["transfer", "--method", "sadi-neuron"])
    cfg = cli.transfer_config(args)
    assert cfg.tasks == ("xnli-en", "xnli-fr", "xnli-es", "xnli-zh")
    assert (cfg.n_train, cfg.n_dev, cfg.n_test) == (100, 50, 200)
    assert cfg.method == "sadi-neuron" and cfg.target_names == cfg.tasks
    args = cli.build_parser().parse_args(["transfer", "--tasks", "copa", "--targets", "xcopa-fr"])
    assert cli.transfer_config(args).target_names == ("xcopa-fr",)
    monkeypatch.setattr(tr, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    rc = cli.main(["transfer", "--tasks", "copa", "xnli-de", "--data-dir", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown XNLI language 'de'" in err[0]
