"""Generation tasks: negatives by similarity, MiniLM embeddings, JSONL files scored on generated
text, and `steerlens run` on such a file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import steerlens.experiments.generation_job as generation_job
import steerlens.tasks.negatives as negatives_mod
from steerlens.cli import main as cli_main
from steerlens.encoder import embed, minilm_available
from steerlens.evaluate_generation import evaluate_generation, read_answer
from steerlens.experiments import RunConfig, run_job
from steerlens.tasks import is_generation_file, load_jsonl
from steerlens.tasks.negatives import choose_negatives
from tests.checking import OFF_TYPE

needs_minilm = pytest.mark.skipif(not minilm_available(), reason="MiniLM wheel not installed")


@pytest.fixture
def no_minilm(monkeypatch):
    monkeypatch.setattr(negatives_mod, "minilm_available", lambda: False)


def test_nearest_number_negatives(no_minilm) -> None:
    answers = [" 51.0", " 52.0", " 7.0", " 51", "#### 6"]
    picks, note = choose_negatives(answers, "nearest")
    # 51 and " 51" read the same number, so neither is the other's negative; ties: earlier row
    assert picks == [1, 0, 4, 1, 2] and note == "nearest other gold number"


def test_text_negatives_are_the_most_similar_other_answer(no_minilm) -> None:
    answers = ["Paris", "Parisian", "London", "paris.", "Londonderry"]
    picks, note = choose_negatives(answers, "nearest")
    assert picks == [1, 0, 4, 1, 2] and "trigrams" in note
    for i, j in enumerate(picks):  # never the same answer once normalised
        assert answers[i].lower().strip(".") != answers[j].lower().strip(".")


def test_negative_rules_errors_and_fallback_note(no_minilm) -> None:
    with pytest.warns(UserWarning, match="MiniLM is not installed"):
        picks, _ = choose_negatives([" 1", " 2", " 4"], "auto")
    assert picks == [1, 0, 1]
    with pytest.raises(ImportError, match="pip install"):
        choose_negatives([" 1", " 2"], "minilm")
    with pytest.raises(ValueError, match="the same"):
        choose_negatives([" 3", "3.0", " 3"], "nearest")
    with pytest.raises(ValueError, match="at least two"):
        choose_negatives([" 3"], "nearest")
    with pytest.raises(OFF_TYPE):
        choose_negatives([" 1", " 2"], "closest")  # type: ignore[arg-type]


@needs_minilm
def test_minilm_embeddings_and_negatives() -> None:
    texts = ["a cat sat on the mat", "x", "the weather is nice today", "12", "a cat on a mat"]
    vectors = embed(texts, batch_size=2)  # padded batches equal one text at a time
    alone = torch.cat([embed([t]) for t in texts])
    assert torch.allclose(vectors, alone, atol=1e-5)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)
    picks, note = choose_negatives(texts, "minilm", numeric=False)
    assert note.endswith("(MiniLM)") and picks[0] == 4 and picks[4] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback note when the encoder is there
        assert choose_negatives(texts, "auto", numeric=False)[0] == picks


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _number_rows(n: int = 12) -> list[dict]:
    splits = ["train"] * (n - 4) + ["dev"] * 2 + ["test"] * 2
    return [
        {"prompt": f"What is {i} plus 1? Answer:", "answer": f" {i + 1}", "split": s}
        for i, s in enumerate(splits)
    ]


def test_generation_jsonl_gets_a_rule_and_negatives_from_its_split(tmp_path, no_minilm) -> None:
    path = _write(tmp_path / "add.jsonl", _number_rows())
    assert is_generation_file(path) and not is_generation_file(tmp_path / "missing.jsonl")
    with pytest.warns(UserWarning, match="MiniLM"):
        task = load_jsonl(path)
    assert task.info["generation"]["match"] == "number" and task.info["generation"]["stop"] == []
    assert [ex.wrong for ex in task.train[:3]] == [(" 2",), (" 1",), (" 2",)]
    assert task.dev[0].wrong == (" 10",) and task.dev[1].wrong == (" 9",)  # dev's own answers
    rows = [
        {"prompt": "Capital of France?", "answer": "Paris", "match": "exact"},
        {"prompt": "Capital of Peru?", "answer": "Lima", "wrong": "Cusco"},
        *({"prompt": f"Word {i}?", "answer": f"word{i}"} for i in range(8)),
    ]
    task = load_jsonl(_write(tmp_path / "cap.jsonl", rows), negatives="nearest")
    rule = task.info["generation"]
    assert rule["match"] == "exact" and rule["stop"] == ["\n"] and rule["extract"] is None
    given = [
        ex for split in (task.train, task.dev, task.test) for ex in split if ex.answer == "Lima"
    ]
    assert given[0].wrong == ("Cusco",)  # a line's own "wrong" is kept


def test_multiple_choice_files_are_unchanged(tmp_path) -> None:
    rows = [{"prompt": f"p{i}", "answer": " Y", "wrong": " N"} for i in range(10)]
    path = _write(tmp_path / "mc.jsonl", rows)
    task = load_jsonl(path)
    assert not is_generation_file(path) and "generation" not in task.info
    with pytest.raises(ValueError, match="multiple-choice file"):
        generation_job.load_generation_task(generation_job.GenerationConfig(task=str(path)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({1: {"match": "exact"}, 2: {"match": "number"}}, "different 'match' rules"),
        ({1: {"match": "fuzzy"}}, "'match' must be one of"),
        ({1: {"extract": "(unclosed"}}, "not a valid regular expression"),
        ({1: {"answer": " many", "match": "number"}}, "holds no number"),
    ],
)
def test_bad_generation_files_name_the_line(tmp_path, no_minilm, change, message) -> None:
    rows = _number_rows()
    for i, fields in change.items():
        rows[i].update(fields)
    with pytest.raises(ValueError, match=message) as err:
        load_jsonl(_write(tmp_path / "bad.jsonl", rows), negatives="nearest")
    assert "bad.jsonl" in str(err.value)


def test_a_split_whose_answers_are_all_equal_is_refused(tmp_path) -> None:
    rows = _number_rows()
    for row in rows[-2:]:
        row["answer"] = " 5"
    with pytest.raises(ValueError, match="cannot pick negatives for the test split"):
        load_jsonl(_write(tmp_path / "same.jsonl", rows), negatives="nearest")


def test_extract_rule_reads_the_answer_from_a_pattern(model) -> None:
    assert read_answer("Final: (c) since ...", "exact", r"\(([a-d])\)") == "c"
    assert read_answer("x = 4, so #### 12 apples", "number", r"x = (\d+)") == 4.0
    assert read_answer("no pattern here 3", "number", r"answer: (\d+)") is None
    with pytest.raises(ValueError, match="not a valid regular expression"):
        evaluate_generation(model, [], extract="(", progress=False)


def test_run_on_a_generation_file_goes_to_the_generation_job(
    tmp_path, model, monkeypatch, capsys, no_minilm
) -> None:
    path = _write(tmp_path / "add.jsonl", _number_rows(16))
    monkeypatch.setattr(generation_job, "load_model", lambda *a, **k: model)
    out = tmp_path / "out"
    argv = ["run", "--task", str(path), "--methods", "sadi-head", "--max-new-tokens", "3"]
    with pytest.warns(UserWarning, match="MiniLM"):
        assert cli_main([*argv, "--batch-size", "4", "--out", str(out)]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["none", "sadi-head"]
    assert len(saved["rows"][1]["dev_grid"]) == 4  # the generation grid: K {1, 4} x {2, 9}
    assert saved["config"]["max_new_tokens"] == 3 and saved["rows"][0]["test"]["n"] == 2
    assert "| sadi-head |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="scored on generated text"), pytest.warns(UserWarning):
        run_job(RunConfig(task=str(path), out=str(out)), model=model)
