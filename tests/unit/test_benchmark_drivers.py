"""The further benchmarks in the drivers: MMLU by discipline in `steerlens run`, SADI Table 1's
MMLU and NLI numbers in the registry, and `steerlens reproduce --tasks` accepting the new names."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest

from steerlens import METHODS, cli
from steerlens.experiments import RunConfig, main_job, run_job
from steerlens.experiments import reproduce as rep
from steerlens.experiments.disciplines import (
    DISCIPLINE_PUBLISHED,
    POOLED,
    discipline_rows,
    item_subjects,
)
from steerlens.methods import published
from steerlens.stats import str_to_flags
from steerlens.tasks import (
    DISCIPLINES,
    PAPER_TASKS,
    PER_ITEM,
    Task,
    discipline_of,
)
from tests.reference import make_examples

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*flip.* sign", "ignore:.*pairs have identical", "ignore:.*exceed.*context"
)

# one subject per discipline, in an order that mixes them
SUBJECTS = ("anatomy", "astronomy", "philosophy", "sociology", "virology", "machine_learning")
T1 = "SADI Table 1 (LLaMA2-7B-Chat)"


def mmlu_like(name: str = "mmlu") -> Task:
    """A tiny task whose items carry MMLU subjects (cycling through `SUBJECTS`)."""
    splits = {"train": make_examples(12, seed=1), "dev": make_examples(8, seed=2)}
    splits["test"] = make_examples(18, seed=3)
    subjects = {
        s: tuple(SUBJECTS[i % len(SUBJECTS)] for i in range(len(v))) for s, v in splits.items()
    }
    return Task(name, **splits, info={PER_ITEM: {"subject": subjects}})


def run_on(task: Task, tmp_path: Path, monkeypatch, model, methods=("sadi-head", "caa")):
    monkeypatch.setattr(main_job, "load_raw_task", lambda config: task)
    monkeypatch.setattr(main_job, "format_task", lambda raw, style, **kw: raw)
    config = RunConfig(methods=methods, batch_size=4, out=str(tmp_path / "run"))
    return run_job(config, model=model, progress=False)


def test_run_reports_each_rows_accuracy_by_discipline(tmp_path, monkeypatch, model) -> None:
    task = mmlu_like()
    result = run_on(task, tmp_path, monkeypatch, model)
    subjects = item_subjects(result.task, "test")
    assert subjects == task.info[PER_ITEM]["subject"]["test"]
    rows = result.disciplines
    assert rows is not None
    assert len(rows) == len(result.records) * 3 * (len(DISCIPLINES) + 1)
    by = {(r["method"], r["protocol"], r["discipline"]): r for r in rows}
    for record in result.records:
        for proto in ("accuracy", "restricted", "paper"):
            flags = str_to_flags(record.test.flags(proto))
            for d in DISCIPLINES:  # by hand: the items of the discipline's subjects
                mine = [f for f, s in zip(flags, subjects, strict=True) if discipline_of(s) == d]
                row = by[(record.method, proto, d)]
                assert (row["correct"], row["n"]) == (sum(mine), len(mine))
                assert row["accuracy"] == pytest.approx(sum(mine) / len(mine))
            pooled = by[(record.method, proto, POOLED)]
            assert pooled["n"] == record.test.n == 18
            assert pooled["accuracy"] == pytest.approx(record.test.metric(proto))
    # SADI Table 2 beside "none" (and only the rows it reports), for the pooled "mmlu" task
    assert by[("none", "accuracy", "STEM")]["published"] == 34.26
    assert by[("none", "paper", "humanities")]["published"] == 46.68
    assert by[("caa", "accuracy", "STEM")]["published"] is None
    assert by[("none", "accuracy", POOLED)]["published"] is None
    assert DISCIPLINE_PUBLISHED["sadi-head"]["other"] == 52.31

    out = Path(result.out)
    with open(out / "disciplines.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and table[0]["discipline"] == "STEM"
    text = (out / "results.md").read_text(encoding="utf-8")
    assert "## MMLU by discipline" in text and "STEM (n=6)" in text and "pooled (n=18)" in text
    assert text.index("## MMLU by discipline") < text.index("Wall time")
    section = text[text.index("## MMLU by discipline") :].splitlines()
    none_line = next(line for line in section if line.startswith("| none | "))
    assert "(34.3)" in none_line and "(46.7)" in none_line  # published in brackets
    # the main table (RunResult.table, results.csv) is unchanged by the discipline section
    assert "MMLU" not in result.table


def test_run_without_subjects_is_unchanged(tmp_path, monkeypatch, model) -> None:
    task = Task("plain", make_examples(12, seed=1), make_examples(8, seed=2), make_examples(8))
    result = run_on(task, tmp_path, monkeypatch, model, methods=("sadi-head",))
    assert result.disciplines is None
    assert not (Path(result.out) / "disciplines.csv").exists()
    assert "discipline" not in (Path(result.out) / "results.md").read_text(encoding="utf-8")


def _write_mmlu(root: Path, subject: str, n_test: int) -> None:
    for kind, n in (("test", n_test), ("dev", 2)):
        path = root / "mmlu" / kind / f"{subject}_{kind}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [[f"q{i}", "w", "x", "y", "z", "ABCD"[i % 4]] for i in range(n)]
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)


def test_run_on_mmlu_files_by_name(tmp_path, model) -> None:
    """Through the loader: per-subject test rows [30%, 100%) grouped by their disciplines."""
    chosen = ("anatomy", "astronomy", "philosophy", "sociology")
    for subject in chosen:
        _write_mmlu(tmp_path / "data", subject, 10)
    config = RunConfig(
        task="mmlu:" + ",".join(chosen),
        data_dir=str(tmp_path / "data"),
        methods=("sadi-head",),
        n_train=None,
        n_dev=None,
        n_test=None,
        batch_size=8,
        out=str(tmp_path / "run"),
    )
    result = run_job(config, model=model, progress=False)
    rows = [r for r in result.disciplines or [] if r["method"] == "none"]
    counts = {r["discipline"]: r["n"] for r in rows if r["protocol"] == "accuracy"}
    assert counts == {"STEM": 7, "humanities": 7, "social sciences": 7, "other": 7, POOLED: 28}
    assert all(r["published"] is None for r in rows)  # Table 2 pools every subject


def test_discipline_rows_refuse_flags_of_other_items(tmp_path, monkeypatch, model) -> None:
    result = run_on(mmlu_like(), tmp_path, monkeypatch, model, methods=("sadi-head",))
    with pytest.raises(ValueError, match="18 test flags for 5 subjects"):
        discipline_rows(result.records, SUBJECTS[:5])


# --- published numbers ----------------------------------------------------------------------

TABLE1 = {  # methods.md §1.6, SADI Table 1: (MMLU, NLI)
    "none": (44.90, 63.11),
    "iti": (46.07, 63.97),
    "iti-released": (46.07, 63.97),
    "caa": (46.17, 64.13),
    "sadi-hidden": (45.66, 59.28),
    "sadi-hidden-released": (45.66, 59.28),
    "sadi-neuron": (46.91, 62.97),
    "sadi-neuron-released": (46.91, 62.97),
    "sadi-head": (48.23, 64.21),
    "sadi-head-released": (48.23, 64.21),
}


@pytest.mark.parametrize("method", TABLE1)
def test_sadi_table1_mmlu_and_nli_numbers(method: str) -> None:
    mmlu, nli = TABLE1[method]
    assert published(method, "mmlu") == (mmlu, T1)
    assert published(method, "mmlu+released") == (mmlu, T1)  # SADI's own rows
    assert published(method, "xnli-en") == (nli, T1)
    assert published(method, "xnli-fr") is None and published(method, "mmlu:anatomy") is None
    if method != "none":
        assert METHODS[method].paper("xnli-en") == (nli, T1)
    # the five old tasks keep their numbers
    assert published("sadi-head", "copa")[0] == 78.80 and published("none", "sst2")[0] == 88.63


def test_austeer_and_ablation_rows_have_no_mmlu_number() -> None:
    for method in ("austeer-ffn", "austeer-attention", "sadi-head-random", "caa-released"):
        assert published(method, "mmlu") is None and published(method, "xnli-en") is None


def test_reproduction_cells_carry_the_new_published_numbers(tmp_path, model) -> None:
    def load(name, n_shot, model):
        return Task(name, make_examples(10, seed=1), make_examples(6, seed=2), make_examples(6))

    config = rep.ReproduceConfig(
        tasks=("xnli-en", "mmlu"),
        shots=(0,),
        methods=("none", "sadi-head"),
        grid="quick",
        n_train=None,
        n_dev=None,
        n_test=None,
        batch_size=4,
        n_boot=50,
        out=str(tmp_path / "rep"),
    )
    result = rep.run_reproduction(config, model=model, task_loader=load, progress=False)
    got = {(r.task, r.method): r.published[0] for r in result.records}
    assert got == {
        ("xnli-en", "none"): 63.11,
        ("xnli-en", "sadi-head"): 64.21,
        ("mmlu", "none"): 44.90,
        ("mmlu", "sadi-head"): 48.23,
    }
    assert "48.23" in (tmp_path / "rep" / "results.md").read_text(encoding="utf-8")


# --- steerlens reproduce --tasks ------------------------------------------------------------


def reproduce_args(*argv: str):
    return cli.build_parser().parse_args(["reproduce", *argv])


def test_reproduce_tasks_accept_every_new_benchmark_name() -> None:
    names = ("mmlu", "mmlu:anatomy,astronomy", "mmlu+released", "mmlu:virology+released")
    names += ("xnli-en", "xnli-fr", "xnli-es", "xnli-zh", "xcopa-fr", "COPA", "sst2")
    cfg = cli.reproduce_config(reproduce_args("--tasks", *names))
    assert cfg.tasks == (*(n.lower() for n in names[:-1]), "sst2")
    assert cli.reproduce_config(reproduce_args()).tasks == PAPER_TASKS
    assert PAPER_TASKS == ("copa", "sst2", "boolq", "storycloze", "winogrande")
    assert dataclasses.replace(rep.ReproduceConfig(), tasks=cfg.tasks).tasks == cfg.tasks


@pytest.mark.parametrize(
    "name, message",
    [
        ("truthfulqa", "steerlens run --task truthfulqa"),
        ("mmlu:not_a_subject", "unknown MMLU subject 'not_a_subject'"),
        ("xnli-de", "unknown task 'xnli-de'"),
        ("xnli-en+released", "unknown task"),
        ("nope", "mmlu:<subject>"),
    ],
)
def test_reproduce_tasks_refuse_with_the_reason(capsys, name: str, message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        reproduce_args("--tasks", name)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_discipline_without_items_reads_nan_not_zero(tmp_path, monkeypatch, model) -> None:
    """A discipline without test items reads NaN with n = 0 (not 0%)."""
    task = mmlu_like()
    only = {s: tuple("anatomy" for _ in getattr(task, s)) for s in ("train", "dev", "test")}
    task = dataclasses.replace(task, info={PER_ITEM: {"subject": only}})
    result = run_on(task, tmp_path, monkeypatch, model, methods=("sadi-head",))
    stem = next(r for r in result.disciplines or [] if r["discipline"] == "STEM")
    assert stem["n"] == 0 and math.isnan(stem["accuracy"])
    assert "STEM (n=0)" in (Path(result.out) / "results.md").read_text(encoding="utf-8")
