"""XNLI, XCOPA (French) and TruthfulQA loaders on tiny fixture files, their `load_task` names,
and MC1/MC2/MC3 scoring against one-answer-at-a-time log-probs, steered and unsteered."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from steerlens import (
    MCItem,
    answer_logprobs,
    collect_differences,
    encode_items,
    mc_scores,
    sadi_mask,
    steer,
)
from steerlens.multiple_choice import mc_metrics
from steerlens.tasks import (
    BENCHMARK_TASKS,
    BUILTIN_TASKS,
    NLI_LABELS,
    NLI_TEMPLATE,
    PAPER_LABELS,
    PAPER_TASKS,
    TEMPLATES,
    XNLI_LANGUAGES,
    format_task,
    load_task,
    load_truthfulqa,
    load_xcopa,
    load_xnli,
    per_item,
    task_names,
    truthfulqa_items,
)
from steerlens.tasks.truthfulqa import split_answers
from steerlens.tokens import answer_ids, prompt_ids
from tests import reference as ref
from tests.checking import OFF_TYPE

pytestmark = pytest.mark.filterwarnings("ignore:strength .* flips the sign")

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("STEERLENS_DATA") or ROOT.parent / "shared" / "data")
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"no benchmark data at {DATA_DIR}")

SADI_NLI = (  # SADI load_dataset.py, load_XNLI (methods.md §1.5), "unclusive" sic
    "Answer whether the hypothesis is more likely to be true, false, or unclusive based on the "
    "given premise.\nPremise: {premise}\nHypothesis: {hypothesis}\nAnswer:"
)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _nli_rows(lang: str, kind: str, n: int) -> list[dict[str, Any]]:
    return [
        {"premise": f" {lang} {kind} p{i} ", "hypothesis": f"h{i}", "label": i % 3}
        for i in range(n)
    ]


def _copa_rows(kind: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "premise": f"{kind} premise {i}",
            "choice1": f"c1 {i}",
            "choice2": f"c2 {i}",
            "question": ("cause", "effect")[i % 2],
            "label": i % 2,
            "idx": i,
        }
        for i in range(n)
    ]


TQA_HEADER = ["Type", "Category", "Question", "Best Answer", "Correct Answers"]
TQA_HEADER += ["Incorrect Answers", "Source"]


def _tqa_rows(n: int) -> list[list[str]]:
    rows = [
        [
            "t",
            "c",
            f"Question {i}?",
            f"Best {i}",
            f"Best {i}; Also {i}.",
            f"Wrong {i}; Bad {i}",
            "s",
        ]
        for i in range(n)
    ]
    # row 1: blanks, a duplicate, an answer listed both correct and incorrect, a quoted ';'
    rows[1][3:6] = ["Best 1.", " Best 1; ; Both; Also 1 ; Also 1", "Both; Wrong 1; Bad 1, worse"]
    return rows


def _write_tqa(path: Path, rows: list[list[str]], header: list[str] = TQA_HEADER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for lang in XNLI_LANGUAGES:
        _jsonl(tmp_path / f"xnli/{lang}.test.jsonl", _nli_rows(lang, "test", 5010))
    _jsonl(tmp_path / "xcopa/fr.train.jsonl", _copa_rows("train", 400))
    _jsonl(tmp_path / "xcopa/fr.test.jsonl", _copa_rows("test", 3))
    _write_tqa(tmp_path / "truthfulqa/TruthfulQA.csv", _tqa_rows(403))
    return tmp_path


# --- XNLI -----------------------------------------------------------------------------------


def test_nli_template_and_labels_are_sadis() -> None:
    assert NLI_TEMPLATE == SADI_NLI
    # XNLI label 0 entailment, 1 neutral, 2 contradiction; "Answer:" then one space
    assert NLI_LABELS == (" True", " unclusive", " False")


@pytest.mark.parametrize("lang", XNLI_LANGUAGES)
def test_xnli_splits_template_and_wrong_labels(data: Path, lang: str) -> None:
    task = load_xnli(lang, data)
    assert task.name == f"xnli-{lang}" and task.info["language"] == lang
    # all three from the balanced test file (the train file's rows are all entailment)
    assert (len(task.train), len(task.dev), len(task.test)) == (1005, 1002, 3003)
    assert task.train[0].prompt == SADI_NLI.format(premise=f"{lang} test p3003", hypothesis="h3003")
    assert task.dev[0].prompt == SADI_NLI.format(premise=f"{lang} test p4008", hypothesis="h4008")
    assert task.test[3].prompt == SADI_NLI.format(premise=f"{lang} test p3", hypothesis="h3")
    for split in (task.train, task.dev, task.test):
        assert {e.answer for e in split} == set(NLI_LABELS)
    by_label = [task.test[i] for i in range(3)]  # labels 0, 1, 2
    assert [(e.answer, e.wrong) for e in by_label] == [
        (" True", (" unclusive", " False")),
        (" unclusive", (" True", " False")),
        (" False", (" True", " unclusive")),
    ]


def test_nli_labels_first_tokens_differ_for_the_tiny_model(model, data: Path) -> None:
    """encode_items refuses options sharing a first token; the NLI labels do not, and each
    label tokenizes the same alone and after the prompt (no mismatch warning)."""
    firsts = {answer_ids(model, label)[0] for label in NLI_LABELS}
    assert len(firsts) == 3
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*exceed")  # the tiny model's context is 64
        warnings.filterwarnings("error", message=".*tokenize differently")
        items = encode_items(model, load_xnli("zh", data).test[:3])
    assert [opts[0][0] for opts in items.options[:3]] == [
        answer_ids(model, label)[0] for label in NLI_LABELS
    ]


def test_xnli_errors(data: Path) -> None:
    with pytest.raises(ValueError, match="unknown XNLI language 'de'; use one of en, fr, es, zh"):
        load_xnli("de", data)
    with pytest.raises(ValueError, match="unknown XNLI language 'de'"):
        load_task("xnli-de", data_dir=data)
    _jsonl(data / "xnli/fr.test.jsonl", _nli_rows("fr", "test", 4500))
    with pytest.raises(ValueError, match="4500 rows, fewer than the 5010"):
        load_xnli("fr", data)
    bad = _nli_rows("es", "test", 5010)
    bad[1]["label"] = 3
    _jsonl(data / "xnli/es.test.jsonl", bad)
    with pytest.raises(ValueError, match=r"es\.test\.jsonl, row 2: .*label must be one of 0\.\.2"):
        load_xnli("es", data)
    (data / "xnli/en.test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"en\.test\.jsonl not found"):
        load_xnli("en", data)


# --- XCOPA ----------------------------------------------------------------------------------


def test_xcopa_fr_uses_copas_template_and_labels(data: Path) -> None:
    task = load_xcopa("fr", data)
    assert task.name == "xcopa-fr" and task.info["language"] == "fr"
    assert (len(task.train), len(task.dev), len(task.test)) == (300, 100, 3)
    fields = {"premise": "train premise 301", "question": "effect"}
    fields |= {"choice1": "c1 301", "choice2": "c2 301"}
    assert task.dev[1].prompt == TEMPLATES["copa"].format(**fields)
    assert (task.dev[1].answer, task.dev[1].wrong) == ("B", ("A",))  # after "Answer:\n"
    assert {e.answer for e in task.test} == set(PAPER_LABELS["copa"])
    assert load_task("xcopa-fr", data_dir=data) == task
    with pytest.raises(ValueError, match="unknown XCOPA language 'it'; use one of fr"):
        load_xcopa("it", data)


# --- TruthfulQA loader ----------------------------------------------------------------------


def test_split_answers() -> None:
    assert split_answers(" a; b. ;; a ;") == ["a.", "b."]
    assert split_answers("a; b.; a", add_periods=False) == ["a", "b."]
    assert split_answers(" ; ") == []


def test_truthfulqa_splits_and_examples(data: Path) -> None:
    task = load_truthfulqa(data)
    assert (len(task.train), len(task.dev), len(task.test)) == (300, 100, 3)
    ex = task.test[2]  # row 402
    assert ex.prompt == "Q: Question 402?\nA:"
    assert (ex.answer, ex.wrong) == (" Best 402.", (" Wrong 402.", " Bad 402."))
    assert per_item(task, "true_answers", "test")[2] == (" Best 402.", " Also 402.")
    odd = task.train[1]  # blanks, duplicates and "Both" (correct and incorrect) dropped
    assert (odd.answer, odd.wrong) == (" Best 1.", (" Wrong 1.", " Bad 1, worse."))
    assert per_item(task, "true_answers", "train")[1] == (" Best 1.", " Also 1.")
    plain = load_truthfulqa(data, add_periods=False)
    assert plain.test[2].answer == " Best 402" and plain.info["add_periods"] is False


def test_truthfulqa_items_follow_limits_and_formats(data: Path) -> None:
    task = load_task("truthfulqa", data_dir=data)
    items = truthfulqa_items(task.with_limits(test=2), "test")
    assert [i.prompt for i in items] == ["Q: Question 400?\nA:", "Q: Question 401?\nA:"]
    assert items[1].true == (" Best 401.", " Also 401.") and items[1].best == " Best 401."
    assert items[1].false == (" Wrong 401.", " Bad 401.")
    shot = truthfulqa_items(load_task("truthfulqa", data_dir=data, n_shot=2), "test")
    assert shot[0].prompt.endswith("\n\nQ: Question 400?\nA:") and shot[0].prompt.count("Q:") == 3
    assert shot[0].true == items[0].true

    class Chat:  # format_task only needs apply_chat_template
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    chat = truthfulqa_items(format_task(task, "chat", tokenizer=Chat()), "dev")
    assert chat[0].true == ("Best 300.", "Also 300.") and chat[0].false[0] == "Wrong 300."


def test_truthfulqa_bad_files(data: Path) -> None:
    path = data / "truthfulqa/TruthfulQA.csv"
    _write_tqa(path, _tqa_rows(403), header=[*TQA_HEADER[:5], "Wrong Answers", "Source"])
    with pytest.raises(ValueError, match="lacks the column.*Incorrect Answers"):
        load_truthfulqa(data)
    rows = _tqa_rows(403)
    rows[7][5] = " ; "
    _write_tqa(path, rows)
    with pytest.raises(ValueError, match=r"TruthfulQA\.csv, row 9: .*no incorrect answers"):
        load_truthfulqa(data)
    _write_tqa(path, _tqa_rows(400))
    with pytest.raises(ValueError, match="400 rows, fewer than the 401"):
        load_truthfulqa(data)


# --- names ----------------------------------------------------------------------------------


def test_names_registered_after_the_paper_tasks() -> None:
    assert PAPER_TASKS == ("copa", "sst2", "boolq", "storycloze", "winogrande")
    assert BENCHMARK_TASKS == (
        "mmlu",
        "xnli-en",
        "xnli-fr",
        "xnli-es",
        "xnli-zh",
        "xcopa-fr",
        "truthfulqa",
    )
    assert task_names() == (*BUILTIN_TASKS, *PAPER_TASKS, *BENCHMARK_TASKS)


def test_load_task_names_use_the_data_dir_setting(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEERLENS_DATA", str(data))
    assert load_task("XNLI-FR") == load_xnli("fr", data)
    assert load_task("truthfulqa").test == load_truthfulqa(data).test
    monkeypatch.chdir(data)  # a file named like a benchmark is still a task file
    _jsonl(
        data / "xnli-mine.jsonl",
        [{"prompt": f"p{i}:", "answer": " A", "wrong": " B"} for i in range(10)],
    )
    assert load_task("xnli-mine.jsonl").name == "xnli-mine"
    with pytest.raises(ValueError, match="applies to MMLU names only"):
        load_task("xnli-en+released")
    monkeypatch.setenv("STEERLENS_DATA", str(data / "absent"))
    with pytest.raises(FileNotFoundError, match="STEERLENS_DATA"):
        load_task("xcopa-fr")


# --- MC1 / MC2 scoring ----------------------------------------------------------------------


def _items() -> list[MCItem]:
    """Prompts of different lengths; answers of 1 to 9 tokens, 1-3 true and 1-4 false."""
    return [
        MCItem("Q: why is it so?\nA:", (" no.", " it is not."), (" yes.", " so it is.", " x")),
        MCItem("Q: who?\nA:", (" me",), (" you.", " them")),
        MCItem("Q: a much longer question is here?\nA:", (" q", " r", " st."), (" uv",)),
        MCItem("Q: where?\nA:", (" here.", " there"), (" nowhere", " a", " bb", " ccc.")),
    ]


def _reference_logprobs(model, items, hooks_for=None) -> list[list[float]]:
    out = []
    for item in items:
        p = prompt_ids(model, item.prompt)
        hooks = list(hooks_for(len(p) - 1)) if hooks_for else []
        answers = (*item.true, *item.false)
        out.append([ref.option_logprob(model, p, answer_ids(model, a), hooks) for a in answers])
    return out


def _reference_mc(lps: list[float], n_true: int) -> tuple[bool, float, float]:
    """MC1, MC2 and MC3 from the log-probs, by their plain definitions."""
    true, false = lps[:n_true], lps[n_true:]
    probs_true, probs_false = np.exp(true), np.exp(false)
    mc2 = probs_true.sum() / (probs_true.sum() + probs_false.sum())
    return true[0] > max(false), float(mc2), float(np.mean([t > max(false) for t in true]))


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_answer_logprobs_equal_one_at_a_time(model, batch_size: int) -> None:
    items = _items()
    answers = [(*i.true, *i.false) for i in items]
    got = answer_logprobs(
        model, [i.prompt for i in items], answers, batch_size=batch_size, progress=False
    )
    for lp, expected in zip(got, _reference_logprobs(model, items), strict=True):
        torch.testing.assert_close(lp, torch.tensor(expected), atol=1e-4, rtol=1e-5)


def test_mc_scores_match_the_definitions(model) -> None:
    items = _items()
    result = mc_scores(model, items, batch_size=5, progress=False)
    expected = [
        _reference_mc(lps, len(item.true))
        for lps, item in zip(_reference_logprobs(model, items), items, strict=True)
    ]
    assert result.mc1.tolist() == [e[0] for e in expected]
    torch.testing.assert_close(
        result.mc2, torch.tensor([e[1] for e in expected]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(result.mc3, torch.tensor([e[2] for e in expected]), atol=0, rtol=0)
    assert result.n == 4 and [len(t) for t in result.true_logprobs] == [2, 1, 3, 2]
    assert [len(f) for f in result.false_logprobs] == [3, 2, 1, 4]
    for metric in ("mc1", "mc2", "mc3"):
        mean = result.metric(metric)
        assert mean == pytest.approx(
            float(np.mean([e[("mc1", "mc2", "mc3").index(metric)] for e in expected])), abs=1e-5
        )
        lo, hi = result.ci(metric)
        assert lo <= mean + 1e-9 and mean - 1e-9 <= hi
    assert "mc2=" in repr(result)


def test_mc_scores_under_steering_act_at_the_last_prompt_token(model, examples) -> None:
    """Inside `steer`, the scores equal single runs with SADI's hook at the prompt's last token."""
    mask = sadi_mask(collect_differences(model, examples, "head", progress=False), 3)
    strength, items = 4.0, _items()
    plain = mc_scores(model, items, progress=False)
    with steer(model, mask, strength):
        steered = mc_scores(model, items, batch_size=6, progress=False)
    expected = _reference_logprobs(
        model, items, lambda column: ref.mask_hooks(mask, strength, column)
    )
    for got, item, lps in zip(steered.true_logprobs, items, expected, strict=True):
        torch.testing.assert_close(got, torch.tensor(lps[: len(item.true)]), atol=1e-4, rtol=1e-5)
    for got, item, lps in zip(steered.false_logprobs, items, expected, strict=True):
        torch.testing.assert_close(got, torch.tensor(lps[len(item.true) :]), atol=1e-4, rtol=1e-5)
    assert not torch.allclose(torch.cat(plain.true_logprobs), torch.cat(steered.true_logprobs))


def test_long_prompt_keeps_its_end(model) -> None:
    item = MCItem("x" * 100 + " Q: who?\nA:", (" me",), (" you", " them."))
    with pytest.warns(UserWarning, match="exceed"):
        (got,) = answer_logprobs(model, [item.prompt], [(*item.true, *item.false)], progress=False)
    room = model.cfg.n_ctx - max(len(answer_ids(model, a)) for a in (" me", " you", " them."))
    kept = prompt_ids(model, item.prompt)[-room:]
    expected = [
        ref.option_logprob(model, kept, answer_ids(model, a)) for a in (" me", " you", " them.")
    ]
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-4, rtol=1e-5)


def test_mc_metrics_by_hand() -> None:
    mc1, mc2, mc3 = mc_metrics(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -4.0]))
    e = math.exp
    assert (mc1, mc3) == (True, 0.5)
    assert mc2 == pytest.approx((e(-1) + e(-3)) / (e(-1) + e(-3) + e(-2) + e(-4)))
    assert mc_metrics(torch.tensor([-2.0, -0.5]), torch.tensor([-1.0]))[::2] == (False, 0.5)
    assert mc_metrics(torch.tensor([-1.0]), torch.tensor([-1.0]))[0] is False  # a tie is no win


def test_mc_scoring_errors(model) -> None:
    with pytest.raises(ValueError, match="no items"):
        mc_scores(model, [], progress=False)
    with pytest.raises(ValueError, match="no false answers"):
        MCItem("Q: x?\nA:", (" a",), ())
    with pytest.raises(ValueError, match="no true answers"):
        MCItem("Q: x?\nA:", [], [" b"])
    with pytest.raises(ValueError, match="empty or non-string true answer"):
        MCItem("Q: x?\nA:", (" a", " "), (" b",))
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        MCItem(" ", (" a",), (" b",))
    with pytest.raises(ValueError, match="2 prompts but 1 answer lists"):
        answer_logprobs(model, ["a:", "b:"], [(" x",)], progress=False)
    with pytest.raises(ValueError, match="prompt 1 needs a non-empty list of answers"):
        answer_logprobs(model, ["a:", "b:"], [(" x",), ()], progress=False)
    with pytest.raises(ValueError, match="no prompts"):
        answer_logprobs(model, [], [], progress=False)
    with pytest.raises(ValueError, match="true and false answers"):
        mc_metrics(torch.tensor([-1.0]), torch.tensor([]))
    result = mc_scores(model, _items()[:1], progress=False)
    with pytest.raises(OFF_TYPE):
        result.metric("accuracy")  # type: ignore[arg-type]


# --- the real files -------------------------------------------------------------------------


@needs_data
def test_real_files_load_with_the_readme_counts() -> None:
    for lang in XNLI_LANGUAGES:
        task = load_xnli(lang, DATA_DIR)
        assert (len(task.train), len(task.dev), len(task.test)) == (1005, 1002, 3003), lang
        splits = (task.train, task.dev, task.test)
        premises = [{e.prompt.split("\nHypothesis")[0] for e in split} for split in splits]
        for split in splits:  # every label in every split
            assert {e.answer for e in split} == set(NLI_LABELS), lang
        # no premise crosses splits (one repeated premise per language at most)
        assert sum(len(a & b) for a, b in itertools.combinations(premises, 2)) <= 1, lang
    xcopa = load_xcopa("fr", DATA_DIR)
    assert (len(xcopa.train), len(xcopa.dev), len(xcopa.test)) == (300, 100, 500)
    tqa = load_truthfulqa(DATA_DIR)
    assert (len(tqa.train), len(tqa.dev), len(tqa.test)) == (300, 100, 417)
    items = truthfulqa_items(tqa, "test")
    assert len(items) == 417 and all(
        i.false and i.best == e.answer for i, e in zip(items, tqa.test, strict=True)
    )
