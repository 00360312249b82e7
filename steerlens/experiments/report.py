"""Results tables: markdown and CSV from `Record`s, for `steerlens run` and `steerlens reproduce`.

Every table shows both protocols with 95% bootstrap intervals and the paired difference to the
unsteered model on the same items ("none"), computed from the records' per-item flags.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..methods import BASELINE
from ..stats import N_BOOT, paired_bootstrap_ci, str_to_flags, verdict
from .records import Record

CSV_COLUMNS = (
    "model",
    "task",
    "format",
    "method",
    "site",
    "setting_name",
    "setting",
    "strength",
    "n_units",
    "n_activations",
    "n_pairs",
    "n_dev",
    "n_test",
    "dev_accuracy",
    "dev_restricted",
    "test_accuracy",
    "test_accuracy_lo",
    "test_accuracy_hi",
    "delta_accuracy",
    "delta_accuracy_lo",
    "delta_accuracy_hi",
    "test_restricted",
    "test_restricted_lo",
    "test_restricted_hi",
    "delta_restricted",
    "delta_restricted_lo",
    "delta_restricted_hi",
    "protocols",
    "published",
    "published_source",
    "seconds",
)

PROTOCOLS_TEXT = (
    "`full` = full-vocabulary argmax equals the gold label's first token (the papers' metric); "
    "`restr.` = the gold option has the highest log-probability among the options. Intervals: "
    "95% percentile bootstrap over test items; Δ = paired difference to `none` on the same items; "
    "+/−/0 = whether the Δ interval lies above 0, below 0 or contains it (full / restricted). "
    "Settings chosen on dev (`steerlens.tune`: ties go to the other protocol, then the smaller "
    "setting and strength); test scored once."
)


def table_rows(
    records: Sequence[Record], *, n_boot: int = N_BOOT, seed: int = 0
) -> list[dict[str, Any]]:
    """One flat row per finished record, with the paired difference to "none" (both protocols)."""
    base = {(r.model, r.task, r.format): r for r in records if r.method == BASELINE}
    rows = []
    for r in records:
        t = r.test
        if t is None:
            continue
        sizes = r.extra.get("sizes", {})
        row: dict[str, Any] = {
            "model": r.model,
            "task": r.task,
            "format": r.format,
            "method": r.method,
            "site": r.site,
            "setting_name": r.setting_name,
            "setting": r.setting,
            "strength": r.strength,
            "n_units": r.n_units,
            "n_activations": r.n_activations,
            "n_pairs": r.n_pairs,
            "n_dev": sizes.get("dev"),
            "n_test": t.n,
            "dev_accuracy": r.dev_accuracy,
            "dev_restricted": r.dev_restricted,
            "test_accuracy": t.accuracy,
            "test_accuracy_lo": t.accuracy_ci[0],
            "test_accuracy_hi": t.accuracy_ci[1],
            "test_restricted": t.restricted,
            "test_restricted_lo": t.restricted_ci[0],
            "test_restricted_hi": t.restricted_ci[1],
            "published": None if r.published is None else r.published[0],
            "published_source": "" if r.published is None else r.published[1],
            "seconds": r.seconds,
        }
        b = base.get((r.model, r.task, r.format))
        marks = []
        for proto in ("accuracy", "restricted"):
            d = lo = hi = math.nan
            if b is not None and b.test is not None and r.method != BASELINE:
                mine, theirs = _flags(t, proto), _flags(b.test, proto)
                if mine and len(mine) == len(theirs):
                    d, lo, hi = paired_bootstrap_ci(
                        str_to_flags(mine), str_to_flags(theirs), n_boot=n_boot, seed=seed
                    )
            row[f"delta_{proto}"], row[f"delta_{proto}_lo"], row[f"delta_{proto}_hi"] = d, lo, hi
            marks.append(verdict(lo, hi))
        row["protocols"] = "" if r.method == BASELINE or b is None else "/".join(marks)
        rows.append(row)
    return rows


def _flags(scores: Any, protocol: str) -> str:
    return str(scores.correct if protocol == "accuracy" else scores.correct_restricted)


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; "–" for missing."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _ci(x: float, lo: float, hi: float) -> str:
    return f"{pct(x)} [{pct(lo)}, {pct(hi)}]"


def _delta(x: float, lo: float, hi: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{100 * x:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _setting(row: Mapping[str, Any]) -> str:
    if row["method"] == BASELINE:
        return "–"
    return f"{row['setting_name']}={row['setting']}, s={row['strength']:g}"


def detail_table(rows: Sequence[Mapping[str, Any]], *, paper: bool = True) -> str:
    """Markdown: one line per method of one (model, task, format)."""
    head = (
        "| method | setting (dev) | #acts | pairs | dev full / restr. | test full-vocab [95% CI] "
        "| Δ full vs none | test restricted [95% CI] | Δ restr. vs none | +/−/0 |"
    )
    lines = [head + (" paper |" if paper else ""), "|---" * (10 + paper) + "|"]
    for r in rows:
        cells = [
            r["method"],
            _setting(r),
            str(r["n_activations"]),
            str(r["n_pairs"] or "–"),
            f"{pct(r['dev_accuracy'])} / {pct(r['dev_restricted'])}",
            _ci(r["test_accuracy"], r["test_accuracy_lo"], r["test_accuracy_hi"]),
            _delta(r["delta_accuracy"], r["delta_accuracy_lo"], r["delta_accuracy_hi"]),
            _ci(r["test_restricted"], r["test_restricted_lo"], r["test_restricted_hi"]),
            _delta(r["delta_restricted"], r["delta_restricted_lo"], r["delta_restricted_hi"]),
            r["protocols"] or "–",
        ]
        if paper:
            cells.append("–" if r["published"] is None else f"{r['published']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> str:
    """Markdown: methods x tasks of one (model, format), test `metric` with the paper's number."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["task"]): r for r in rows}
    key = "test_accuracy" if metric == "accuracy" else "test_restricted"
    lines = ["| method | " + " | ".join(f"{t} (paper)" for t in tasks) + " |"]
    lines.append("|---|" + "---|" * len(tasks))
    for m in methods:
        cells = []
        for t in tasks:
            r = by.get((m, t))
            if r is None:
                cells.append("")
                continue
            paper = "" if r["published"] is None else f" ({r['published']:.1f})"
            cells.append(f"{pct(r[key])}{paper}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows of `table_rows` as CSV with `CSV_COLUMNS` (one schema for run and reproduce)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def grids_csv(records: Sequence[Record]) -> str:
    """Every dev cell of every record: method, setting, strength, dev accuracy, dev restricted."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["method", "setting", "strength", "dev_accuracy", "dev_restricted"])
    for r in records:
        for cell in r.grid:
            writer.writerow(
                [r.method, cell["setting"], cell["strength"], cell["accuracy"], cell["restricted"]]
            )
    return buf.getvalue()
