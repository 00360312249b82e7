"""MMLU: the loader's splits and template on tiny fixture files, SADI's released rows, the
discipline map and per-discipline accuracy; one light check on the real files when present."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from steerlens.tasks import (
    DISCIPLINES,
    MMLU_DISCIPLINES,
    MMLU_LABELS,
    MMLU_SUBJECTS,
    MMLU_TEMPLATE,
    discipline_accuracy,
    discipline_of,
    format_task,
    load_mmlu,
    load_task,
    per_item,
)
from tests.checking import OFF_TYPE

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("STEERLENS_DATA") or ROOT.parent / "shared" / "data")
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "mmlu").is_dir(), reason=f"MMLU data not found at {DATA_DIR}"
)

SADI_TEMPLATE = (  # SADI load_dataset.py, load_mmlu (methods.md §1.5)
    "Question: {question}\nWhich of the following answers is correct?\nA. {A}\nB. {B}\n"
    "C. {C}\nD. {D}\nState the letter corresponding to the correct answer.\nAnswer:"
)


def _rows(subject: str, kind: str, n: int) -> list[list[str]]:
    """Synthetic rows: question "<subject> <kind> q<i>", options "o<i><letter>", answer cycling."""
    return [
        [f"{subject} {kind} q{i}", *(f"o{i}{x}" for x in "abcd"), "ABCD"[i % 4]] for i in range(n)
    ]


def _write_subject(root: Path, subject: str, n_test: int, n_dev: int = 2) -> None:
    for kind, n in (("test", n_test), ("dev", n_dev)):
        path = root / "mmlu" / kind / f"{subject}_{kind}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(_rows(subject, kind, n))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    _write_subject(tmp_path, "anatomy", 10)
    _write_subject(tmp_path, "astronomy", 20)
    # a quoted question spanning lines, with commas, and padded fields (stripped)
    special = [["Line one,\nline two", " 1, 2 ", "x", "y", "z", "C"]]
    with open(tmp_path / "mmlu/test/philosophy_test.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(special + _rows("philosophy", "test", 9))
    with open(tmp_path / "mmlu/dev/philosophy_dev.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(_rows("philosophy", "dev", 1))
    return tmp_path


def _questions(examples) -> list[str]:
    return [ex.prompt.split("\n")[0].removeprefix("Question: ") for ex in examples]


# --- loader ---------------------------------------------------------------------------------


def test_template_is_sadi_verbatim() -> None:
    assert MMLU_TEMPLATE == SADI_TEMPLATE
    assert MMLU_LABELS == (" A", " B", " C", " D")  # "Answer:" then one space


def test_one_subject_splits_20_10_70(data: Path) -> None:
    """train = dev file + test rows [0, 20%), dev = [20%, 30%), test = [30%, 100%)."""
    task = load_mmlu("anatomy", data)
    assert task.name == "mmlu:anatomy"
    assert _questions(task.train) == [
        "anatomy dev q0",
        "anatomy dev q1",
        "anatomy test q0",
        "anatomy test q1",
    ]
    assert _questions(task.dev) == ["anatomy test q2"]
    assert _questions(task.test) == [f"anatomy test q{i}" for i in range(3, 10)]
    for split in ("train", "dev", "test"):
        assert per_item(task, "subject", split) == ("anatomy",) * len(getattr(task, split))
    assert task.info["released_rows"] is False


def test_prompt_answer_and_wrong_letters(data: Path) -> None:
    ex = load_mmlu("anatomy", data).test[0]  # test row 3: answer "D"
    assert ex.prompt == SADI_TEMPLATE.format(
        question="anatomy test q3", A="o3a", B="o3b", C="o3c", D="o3d"
    )
    assert (ex.answer, ex.wrong) == (" D", (" A", " B", " C"))
    for e in load_mmlu("anatomy", data).train:
        assert sorted(e.options) == list(MMLU_LABELS)


def test_multiline_quoted_fields_are_one_row_and_stripped(data: Path) -> None:
    task = load_mmlu("philosophy", data)
    assert len(task.train) + len(task.dev) + len(task.test) == 1 + 10
    first = task.train[1]  # after the one dev-file row
    assert first.prompt.startswith("Question: Line one,\nline two\nWhich of the following")
    assert "\nA. 1, 2\nB. x\n" in first.prompt
    assert first.answer == " C"


def test_pooled_subjects_in_order_with_aligned_subjects(data: Path) -> None:
    task = load_mmlu(["astronomy", "anatomy"], data)
    assert task.name == "mmlu:astronomy,anatomy"
    assert (len(task.train), len(task.dev), len(task.test)) == (6 + 4, 2 + 1, 14 + 7)
    subjects = per_item(task, "subject", "train")
    assert subjects == ("astronomy",) * 6 + ("anatomy",) * 4
    assert all(q.startswith(s) for q, s in zip(_questions(task.train), subjects, strict=True))
    assert per_item(task, "subject", "dev") == ("astronomy",) * 2 + ("anatomy",)


def test_with_limits_and_format_keep_subjects_aligned(data: Path) -> None:
    task = load_mmlu(["astronomy", "anatomy"], data)
    cut = task.with_limits(train=7, dev=0)
    assert per_item(cut, "subject", "train") == ("astronomy",) * 6 + ("anatomy",)
    assert per_item(cut, "subject", "dev") == ()
    assert per_item(cut, "subject", "test") == per_item(task, "subject", "test")
    shot = format_task(task, n_shot=2).with_limits(test=15)
    assert per_item(shot, "subject", "test") == ("astronomy",) * 14 + ("anatomy",)
    assert shot.test[14].prompt.endswith(task.test[14].prompt)


def test_per_item_refuses_misaligned_or_unknown(data: Path) -> None:
    task = load_mmlu("anatomy", data)
    sliced = dataclasses.replace(task, test=task.test[:2])  # not through with_limits
    with pytest.raises(ValueError, match="with_limits"):
        per_item(sliced, "subject", "test")
    with pytest.raises(ValueError, match="no per-item field 'topic'.*subject"):
        per_item(task, "topic", "test")
    with pytest.raises(ValueError, match="unknown split"):
        per_item(task, "subject", "valid")


def test_released_rows_share_the_first_501_test_rows(tmp_path: Path) -> None:
    _write_subject(tmp_path, "virology", 503)
    _write_subject(tmp_path, "anatomy", 10)
    (tmp_path / "mmlu/dev/virology_dev.csv").unlink()  # the released protocol ignores dev files
    task = load_mmlu(["virology", "anatomy"], tmp_path, released_rows=True)
    assert task.name == "mmlu:virology,anatomy+released"
    assert task.train == task.dev == task.test
    assert len(task.test) == 501 + 10  # SADI keeps id_line <= 500; shorter files whole
    assert _questions(task.test)[500:502] == ["virology test q500", "anatomy test q0"]
    assert task.info["released_rows"] is True and "same rows" in task.info["note"]
    assert per_item(task, "subject", "dev") == ("virology",) * 501 + ("anatomy",) * 10
    assert load_task("mmlu:anatomy+released", data_dir=tmp_path).test == task.test[501:]


def test_all_subjects_by_name(tmp_path: Path) -> None:
    for subject in MMLU_SUBJECTS:
        _write_subject(tmp_path, subject, 10, n_dev=1)
    task = load_task("mmlu", data_dir=tmp_path)
    assert task.name == "mmlu" and task.info["subjects"] == MMLU_SUBJECTS
    n = len(MMLU_SUBJECTS)
    assert (len(task.train), len(task.dev), len(task.test)) == (3 * n, n, 7 * n)
    assert Counter(per_item(task, "subject", "test")) == dict.fromkeys(MMLU_SUBJECTS, 7)
    one = load_task("mmlu:sociology", data_dir=tmp_path)
    assert one.test == task.test[7 * MMLU_SUBJECTS.index("sociology") :][:7]


@pytest.mark.parametrize(
    ("subjects", "message"),
    [
        ("astrology", r"unknown MMLU subject 'astrology'; valid subjects: abstract_algebra, "),
        (["anatomy", "nope"], "unknown MMLU subject 'nope'.*world_religions"),
        ([], "no MMLU subjects"),
        (["anatomy", "anatomy"], "twice"),
    ],
)
def test_bad_subjects(data: Path, subjects, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_mmlu(subjects, data)


def test_unknown_subject_through_load_task(data: Path) -> None:
    with pytest.raises(ValueError, match="unknown MMLU subject 'nope'"):
        load_task("mmlu:nope", data_dir=data)


def test_missing_and_malformed_files(data: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"virology_test\.csv not found.*mmlu/test/"):
        load_mmlu("virology", data)
    path = data / "mmlu/test/anatomy_test.csv"
    path.write_text(path.read_text().replace(",D\n", ",E\n", 1))
    with pytest.raises(ValueError, match=r"anatomy_test\.csv, row 4: .*A, B, C or D"):
        load_mmlu("anatomy", data)
    path.write_text("q,a,b,c,A\n" * 10)
    with pytest.raises(ValueError, match="row 1: .*6 fields"):
        load_mmlu("anatomy", data)
    path.write_text("q,a,b,c,d,A\n" * 3)
    with pytest.raises(ValueError, match="too few"):
        load_mmlu("anatomy", data)


# --- disciplines ----------------------------------------------------------------------------


def test_discipline_map_is_mmlus_57_subjects() -> None:
    assert len(MMLU_DISCIPLINES) == 57 and set(MMLU_DISCIPLINES.values()) == set(DISCIPLINES)
    counts = Counter(MMLU_DISCIPLINES.values())
    assert counts == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
    assert len(MMLU_SUBJECTS) == 54 and set(MMLU_SUBJECTS) <= set(MMLU_DISCIPLINES)
    spot = {
        "abstract_algebra": "STEM",
        "computer_security": "STEM",
        "formal_logic": "humanities",
        "world_religions": "humanities",
        "econometrics": "social sciences",
        "human_sexuality": "social sciences",
        "global_facts": "other",
        "professional_accounting": "other",
    }
    assert {s: discipline_of(s) for s in spot} == spot


def test_discipline_accuracy_pools_items() -> None:
    """A discipline's accuracy counts items, not subjects: STEM here is 2/4 = 0.5, not the mean
    of its subjects' accuracies (2/3 and 0/1)."""
    subjects = ["astronomy"] * 3 + ["abstract_algebra", "philosophy", "anatomy", "virology"]
    flags = [True, True, False, False, True, True, False]
    for given in (flags, np.array(flags), torch.tensor(flags)):
        out = discipline_accuracy(given, subjects)
        assert list(out) == list(DISCIPLINES)
        assert out["STEM"] == (0.5, 2, 4)
        assert out["humanities"] == (1.0, 1, 1)
        assert out["other"] == (0.5, 1, 2)
        assert out["social sciences"].n == 0 and math.isnan(out["social sciences"].accuracy)
    assert sum(s.n for s in out.values()) == len(flags)


def test_discipline_accuracy_errors() -> None:
    with pytest.raises(ValueError, match="3 correct flags but 2 subjects"):
        discipline_accuracy([True, False, True], ["anatomy", "virology"])
    with pytest.raises(ValueError, match="unknown MMLU subject 'art'; valid subjects: .*anatomy"):
        discipline_accuracy([True], ["art"])
    with pytest.raises(ValueError, match="a string"):
        discipline_accuracy([True], "anatomy")
    with pytest.raises(OFF_TYPE):
        discipline_accuracy(np.array([0.5, 1.0]), ["anatomy", "virology"])
    with pytest.raises(ValueError, match="unknown MMLU subject"):
        discipline_of("Anatomy")


# --- the real files -------------------------------------------------------------------------


@needs_data
def test_real_mmlu_files() -> None:
    """The data directory's 54 subjects, all mapped; the README's row counts."""
    on_disk = sorted(p.name.removesuffix("_test.csv") for p in (DATA_DIR / "mmlu/test").iterdir())
    assert on_disk == sorted(MMLU_SUBJECTS)
    assert all(s in MMLU_DISCIPLINES for s in on_disk)
    task = load_mmlu(data_dir=DATA_DIR)
    sizes = (len(task.train), len(task.dev), len(task.test))
    assert sum(sizes) == 13_496 + 270 and sizes == (2955, 1342, 9469)
    assert all(ex.prompt.endswith("\nAnswer:") and ex.answer in MMLU_LABELS for ex in task.test)
    subjects = per_item(task, "subject", "test")
    counts = discipline_accuracy(np.ones(len(subjects), dtype=bool), subjects)
    assert sum(s.n for s in counts.values()) == 9469 and all(s.n > 0 for s in counts.values())
