"""Results tables: markdown and CSV from `Record`s, for `steerlens run` and `steerlens reproduce`.

Every table shows the three protocols (`steerlens.evaluate.METRICS`) with 95% bootstrap intervals
and the paired difference to the unsteered model on the same items ("none"), computed from the
records' per-item flags.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._io import csv_text
from ..evaluate import METRICS
from ..methods import BASELINE
from ..stats import N_BOOT, paired_bootstrap_ci, str_to_flags, verdict
from .records import Record

SHORT = {"accuracy": "full", "restricted": "restr.", "paper": "paper"}

CSV_COLUMNS = (
    *("model", "task", "format", "method", "site", "setting_name", "setting", "strength"),
    *("n_units", "n_activations", "n_pairs", "n_dev", "n_test"),
    *(f"dev_{m}" for m in METRICS),
    *(
        column
        for m in METRICS
        for column in (
            f"test_{m}",
            f"test_{m}_lo",
            f"test_{m}_hi",
            f"delta_{m}",
            f"delta_{m}_lo",
            f"delta_{m}_hi",
        )
    ),
    *("protocols", "published", "published_source", "seconds"),
)

PROTOCOLS_TEXT = (
    "`full` = the full-vocabulary argmax is exactly the gold answer's first token; `restr.` = the "
    "gold option has the highest log-probability among the options; `paper` = the papers' "
    "released metric, the decoded argmax with punctuation removed, stripped and lowercased equals "
    "the gold string. Intervals: 95% percentile bootstrap over test items; Δ = paired difference "
    "to `none` on the same items; +/−/0 = whether the Δ interval lies above 0, below 0 or "
    "contains it (full / restr. / paper). Settings chosen on dev (`steerlens.tune`: ties go to "
    "the other protocols, then the smaller setting and strength); test scored once."
)


def table_rows(
    records: Sequence[Record], *, n_boot: int = N_BOOT, seed: int = 0
) -> list[dict[str, Any]]:
    """One flat row per finished record, with the paired difference to "none" (every protocol)."""
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
            "dev_paper": r.dev_paper,
            "published": None if r.published is None else r.published[0],
            "published_source": "" if r.published is None else r.published[1],
            "seconds": r.seconds,
        }
        b = base.get((r.model, r.task, r.format))
        marks = []
        for proto in METRICS:
            lo_hi = t.ci(proto)
            row[f"test_{proto}"] = t.metric(proto)
            row[f"test_{proto}_lo"], row[f"test_{proto}_hi"] = lo_hi
            d = lo = hi = math.nan
            if b is not None and b.test is not None and r.method != BASELINE:
                mine, theirs = t.flags(proto), b.test.flags(proto)
                if mine and len(mine) == len(theirs):
                    d, lo, hi = paired_bootstrap_ci(
                        str_to_flags(mine), str_to_flags(theirs), n_boot=n_boot, seed=seed
                    )
            row[f"delta_{proto}"], row[f"delta_{proto}_lo"], row[f"delta_{proto}_hi"] = d, lo, hi
            marks.append(verdict(lo, hi))
        row["protocols"] = "" if r.method == BASELINE or b is None else "/".join(marks)
        rows.append(row)
    return rows


def pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal; "–" for missing."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def ci_text(x: float, lo: float, hi: float) -> str:
    """A fraction and its interval as percentages: `48.3 [35.0, 60.0]`."""
    return f"{pct(x)} [{pct(lo)}, {pct(hi)}]"


def delta_text(x: float, lo: float, hi: float, *, mark: bool = False) -> str:
    """A paired difference and its interval in points, `+5.0 [+0.0, +11.7]` ("–" when NaN);
    `mark` appends whether the interval lies above 0, below it or contains it (`verdict`)."""
    if math.isnan(x):
        return "–"
    text = f"{100 * x:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return f"{text} {verdict(lo, hi)}" if mark else text


def _setting(row: Mapping[str, Any]) -> str:
    if row["method"] == BASELINE:
        return "–"
    return f"{row['setting_name']}={row['setting']}, s={row['strength']:g}"


def detail_table(rows: Sequence[Mapping[str, Any]], *, paper: bool = True) -> str:
    """Markdown: one line per method of one (model, task, format); `paper` adds the published
    number column."""
    protocols = " | ".join(f"test {SHORT[m]} [95% CI] | Δ {SHORT[m]} vs none" for m in METRICS)
    head = f"| method | setting (dev) | #acts | pairs | dev full / restr. / paper | {protocols} | +/−/0 |"
    n_cols = 6 + 2 * len(METRICS)
    lines = [head + (" published |" if paper else ""), "|---" * (n_cols + paper) + "|"]
    for r in rows:
        cells = [
            r["method"],
            _setting(r),
            str(r["n_activations"]),
            str(r["n_pairs"] or "–"),
            " / ".join(pct(r[f"dev_{m}"]) for m in METRICS),
        ]
        for m in METRICS:
            cells.append(ci_text(r[f"test_{m}"], r[f"test_{m}_lo"], r[f"test_{m}_hi"]))
            cells.append(delta_text(r[f"delta_{m}"], r[f"delta_{m}_lo"], r[f"delta_{m}_hi"]))
        cells.append(r["protocols"] or "–")
        if paper:
            cells.append("–" if r["published"] is None else f"{r['published']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> str:
    """Markdown: methods x tasks of one (model, format), test `metric` with the paper's number."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["task"]): r for r in rows}
    key = f"test_{metric}"
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
    return csv_text(rows, CSV_COLUMNS)


def grids_csv(records: Sequence[Record]) -> str:
    """Every dev cell of every record: method, setting, strength, one dev score per protocol."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["method", "setting", "strength", *(f"dev_{m}" for m in METRICS)])
    for r in records:
        for cell in r.grid:
            scores = [cell.get(m, "") for m in METRICS]
            writer.writerow([r.method, cell["setting"], cell["strength"], *scores])
    return buf.getvalue()


def reproduction_markdown(
    records: Sequence[Record],
    *,
    metric: str,
    style: str,
    n_boot: int = N_BOOT,
    seed: int = 0,
    seconds: float | None = None,
    cpu_seconds: float | None = None,
) -> str:
    """A reproduction's results document: sizes, one methods x tasks matrix per protocol, then
    one detailed table per task."""
    rows = table_rows(records, n_boot=n_boot, seed=seed)
    prepare: dict[tuple[str, str, str], float] = {}
    for r in records:
        prep = r.extra.get("prepare", {}).get("seconds", {})
        prepare[(r.model, r.task, r.format)] = sum(prep.values())
    sizes = sorted(
        {
            (r.task, *(r.extra.get("sizes", {}).get(k, 0) for k in ("train_pairs", "dev", "test")))
            for r in records
        }
    )
    compute = sum(r.seconds for r in records) + sum(prepare.values())
    wall = f"; this invocation {seconds:.0f} s wall" if seconds is not None else ""
    cpu = (
        f", {cpu_seconds:.0f} s CPU (torch threads: {torch.get_num_threads()})"
        if cpu_seconds is not None
        else ""
    )
    parts = [
        "# steerlens reproduction results\n",
        f"Dev metric: `{metric}`. {PROTOCOLS_TEXT} `published` = the published "
        "LLaMA2-7B-Chat number for the cell (source in results.csv): compare the direction and "
        "size of gains, not the level.\n",
        "Sizes (first rows of each split): "
        + "; ".join(f"{t}: {p} pairs, dev {d}, test {n}" for t, p, d, n in sizes)
        + ".\n",
        f"Compute: {compute:.0f} s in cells and preparation{wall}{cpu}.\n",
    ]
    for model_name in dict.fromkeys(r["model"] for r in rows):
        for fmt in dict.fromkeys(r["format"] for r in rows if r["model"] == model_name):
            sub = [r for r in rows if r["model"] == model_name and r["format"] == fmt]
            parts.append(f"## {model_name}, {fmt} ({style} template)\n")
            for metric, what in (
                ("accuracy", "exact first token, full vocabulary"),
                ("paper", "the papers' string match"),
                ("restricted", "restricted to the options"),
            ):
                parts.append(f"Test accuracy, {what} (published number in brackets):\n")
                parts.append(summary_table(sub, metric) + "\n")
            for task in dict.fromkeys(r["task"] for r in sub):
                cell_rows = [r for r in sub if r["task"] == task]
                prep = prepare.get((model_name, task, fmt), 0.0)
                parts.append(f"### {task}, {fmt}\n")
                parts.append(detail_table(cell_rows) + "\n")
                parts.append(
                    f"Time: {sum(r['seconds'] for r in cell_rows):.0f} s in cells "
                    f"+ {prep:.0f} s preparation.\n"
                )
    return "\n".join(parts)
