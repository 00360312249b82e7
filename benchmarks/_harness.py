"""The benchmark's measuring harness: clocks and interleaved timing, peak memory of a child
process, and the report (the printed table and `results.json`).

- `Clock`, `race`: competing variants run interleaved, round by round; each figure is the fastest
  round (noise on a shared machine only ever adds time).
- `PeakRSS`, `emit_memory`, `run_memory_children`: the memory protocol. Each tool's
  configurations run in a process of their own, one after another, each printing one
  `MEMORY {json}` line; the parent collects those lines.
- `table`, `report`: the results as a Markdown table plus the scaling and diagnostics lines.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# ---- timing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """What `race` reads (`name` is recorded in the results) and the device it waits for."""

    name: str
    read: Callable[[], float]
    device: torch.device

    @classmethod
    def wall(cls, device: str | torch.device) -> Clock:
        return cls("wall", time.perf_counter, torch.device(device))

    @classmethod
    def for_device(cls, device: str | torch.device) -> Clock:
        """On a CPU with one torch thread, the process's CPU time: the work done, unaffected by
        other processes taking turns on the cores. Elsewhere (CUDA, several threads) wall-clock."""
        dev = torch.device(device)
        if dev.type == "cpu" and torch.get_num_threads() == 1:
            return cls("cpu", time.process_time, dev)
        return cls.wall(dev)

    def sync(self) -> None:
        """Wait for the device's queued work, so that the clock reads finished work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def race(clock: Clock, rounds: int, **variants: Callable[[], object]) -> dict[str, float]:
    """Run the variants interleaved for `rounds` rounds; the fastest time of each, in seconds."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, fn in variants.items():
            clock.sync()
            start = clock.read()
            fn()
            clock.sync()
            best[name] = min(best[name], clock.read() - start)
    return best


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- memory: one child process per configuration ---------------------------------------------

MEMORY_PREFIX = "MEMORY "


def status_kb(key: str) -> int:
    """A `/proc/self/status` field in kB (`VmRSS`: resident now, `VmHWM`: its peak)."""
    found = re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text())
    if found is None:
        raise RuntimeError(f"no {key} in /proc/self/status")
    return int(found.group(1))


class PeakRSS:
    """The peak resident memory since `reset()`: `VmHWM` after resetting it through
    `/proc/self/clear_refs`, or, where that file cannot be written, the process's `ru_maxrss`
    (which also counts everything before, model loading included)."""

    def __init__(self) -> None:
        self.resettable = True

    def reset(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.resettable = False

    @property
    def how(self) -> str:
        return "VmHWM after clear_refs" if self.resettable else "ru_maxrss (includes model loading)"

    def peak_kb(self) -> int:
        if self.resettable:
            return status_kb("VmHWM")
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def emit_memory(measured: dict[str, Any]) -> None:
    """The child's side: its one result line, for `run_memory_children`."""
    print(MEMORY_PREFIX + json.dumps(measured), flush=True)


def run_memory_children(commands: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Run the child commands side by side (their timings are not compared) and return their
    `MEMORY` lines, parsed, in the order of `commands` and of each child's lines."""
    # a fixed mmap threshold returns freed batch buffers to the OS at once, so that RSS follows
    # live memory (glibc's adaptive threshold keeps them, and RSS creeps up)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    running = [
        subprocess.Popen(list(cmd), stdout=subprocess.PIPE, text=True, env=env) for cmd in commands
    ]
    results: list[dict[str, Any]] = []
    for proc in running:
        out, _ = proc.communicate()
        lines = [x for x in out.splitlines() if x.startswith(MEMORY_PREFIX)]
        if proc.returncode or not lines:
            raise RuntimeError(f"memory subprocess failed ({proc.returncode}):\n{out}")
        results += [json.loads(line[len(MEMORY_PREFIX) :]) for line in lines]
    return results


# ---- report ------------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    """The results as a Markdown table, each row against its target (collection at least 0.8x
    a plain batched forward and 10x the per-example reference, memory flat in the number of
    pairs, steering hooks within 10% of an unhooked evaluation, a 48-setting sweep within 4x one
    evaluation), then the scaling and diagnostics lines."""
    c, ov, s, a = r["collection"], r["overhead"], r["sweep_sadi"], r["sweep_austeer"]
    ms = 1000 * c["seconds_per_pair"]["steerlens"], 1000 * c["seconds_per_pair"]["reference"]
    rows = [
        (
            "1",
            f"collection, 4 sites, {c['n_pairs']} pairs: throughput vs plain batched forward",
            f"{c['throughput_vs_plain_forward']:.2f}x",
            ">= 0.8x",
            f"{c['seconds']['steerlens']:.1f} s vs {c['seconds']['plain_forward']:.1f} s "
            f"(whole texts, no prompt sharing: {c['full_texts_vs_plain_forward']:.2f}x)",
        ),
        (
            "1",
            "collection: speed-up vs per-example cache-everything reference",
            f"{c['speedup_vs_reference']:.1f}x",
            ">= 10x",
            f"{ms[0]:.0f} vs {ms[1]:.0f} ms/pair "
            f"(reference timed on {c['n_pairs_reference']} pairs)",
        ),
    ]
    for m in r["memory"]:
        plain = m.get("plain_forward_batch_peak_mb")
        who = "Hugging Face hooks" if m.get("tool") == "hf_hooks" else "steerlens"
        rows.append(
            (
                "2",
                f"peak RSS above the loaded model, {who}: {m['n_pairs']} {m['kind']} pairs "
                f"(~{m['mean_prompt_tokens']:.0f}-token prompts)",
                f"+{m['peak_minus_before_mb']:.0f} MB",
                "flat",
                f"model loaded {m['rss_before_mb']:.0f} MB"
                + (f"; one plain forward batch: +{plain:.0f} MB" if plain is not None else ""),
            )
        )
    one_per_pass = (
        f"; one setting per pass: {a['one_per_pass_vs_eval']:.2f}x"
        if "one_per_pass_vs_eval" in a
        else ""
    )
    rows += [
        (
            "3",
            f"evaluation with SADI hooks (K={ov['sadi_k']} heads) vs none",
            f"{ov['sadi_vs_none']:.3f}x",
            "<= 1.10x",
            f"{ov['seconds']['sadi']:.1f} vs {ov['seconds']['none']:.1f} s, "
            f"{ov['n_examples']} SST-2 dev",
        ),
        (
            "3",
            f"evaluation with AUSteer hooks (K={ov['austeer_k']} dims) vs none",
            f"{ov['austeer_vs_none']:.3f}x",
            "<= 1.10x",
            f"{ov['seconds']['austeer']:.1f} s",
        ),
        (
            "4",
            f"SADI sweep, {s['n_settings']} settings x {s['n_examples']} SST-2 dev "
            "vs one evaluation",
            f"{s['sweep_vs_eval']:.2f}x",
            "<= 4x",
            f"{s['seconds']['sweep']:.1f} vs {s['seconds']['eval']:.1f} s; equals naive sweep "
            f"(max |d logp| {s['equality_check']['max_abs_logprob_diff']:.0e})",
        ),
        (
            "4",
            f"AUSteer sweep, {a['n_settings']} settings x {a['n_examples']} SST-2 dev "
            "vs one evaluation",
            f"{a['sweep_vs_eval']:.2f}x",
            "<= 4x",
            f"first steered layer per K {a['first_steered_layers']} (layer-count model "
            f"{a['layer_fraction_model']:.0f}x){one_per_pass}; equals naive sweep "
            f"(max |d logp| {a['equality_check']['max_abs_logprob_diff']:.0e})",
        ),
    ]
    rows += peer_rows(r.get("peers"))
    rows += few_shot_rows(r.get("few_shot"))
    rows += end_to_end_rows(r.get("end_to_end"))
    unit = "CPU seconds (one torch thread)" if r["clock"] == "cpu" else "wall-clock seconds"
    speed = c.get("plain_forward_ms_per_token")
    lines = [
        f"Times in {unit}; each the fastest of interleaved rounds. Machine speed: "
        + (f"{speed:.2f} ms per token of a plain batched forward (section 1)." if speed else "-"),
        "",
    ]
    lines += ["| # | measure | result | target | absolute |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    sc, d = r["scaling"], r["diagnostics"]
    lines += [
        "",
        "5 scaling",
        "  collection (4 sites) vs N pairs: "
        + ", ".join(f"{x['n_pairs']}: {x['seconds']:.1f} s" for x in sc["collection_vs_n"]),
        "  collection per pair vs text length: "
        + ", ".join(
            f"{x['mean_text_tokens']:.0f} tok: {1000 * x['seconds_per_pair']:.0f} ms"
            for x in sc["collection_vs_length"]
        ),
        "  SADI sweep vs number of settings (x one evaluation): "
        + ", ".join(f"{x['n_settings']}: {x['vs_eval']:.2f}x" for x in sc["sweep_vs_settings"]),
        "  SADI sweep, 48 settings, vs prompt length (x one evaluation): "
        + ", ".join(
            f"{x['mean_prompt_tokens']:.0f} tok: {x['vs_eval']:.2f}x" for x in sc["sweep_vs_length"]
        ),
        "",
        f"6 one-token KV-cached pass, {d['batch_rows']} rows (seconds; TransformerLens layout, "
        "matmul_layout, its matrix products alone):",
    ]
    for k in (k for k in d if k.startswith("threads_")):
        t = d[k]
        lines.append(
            f"  {k.replace('_', ' ')}: {t['plain']:.3f}, {t['matmul_layout']:.3f}, "
            f"{t['matmuls_only']:.3f}"
        )
    for k, v in d.get("profile_top_ops", {}).items():
        lines.append(f"  top ops ({k}): " + ", ".join(v))
    return "\n".join(lines)


Row = tuple[str, str, str, str, str]


def peer_rows(p: dict[str, Any] | None) -> list[Row]:
    """Section 7: steerlens against the Hugging Face floor and nnsight, same model and texts."""
    if not p:
        return []
    c, e, g = p["collection"], p["steered_eval"], p["generation"]
    cs, es, gs = c["seconds"], e["seconds"], g["positions_per_second"]
    rows: list[Row] = [
        (
            "7",
            f"collection, resid at every layer, {p['n_pairs']} SST-2 pairs: steerlens vs "
            "Hugging Face forward + hooks",
            f"{c['steerlens_vs_hf_hooks']:.2f}x",
            ">= 0.8x",
            f"{cs['steerlens']:.1f} vs {cs['hf_hooks']:.1f} s; means agree to "
            f"{c['max_abs_diff_of_means']['hf']:.0e}",
        ),
        (
            "7",
            f"evaluation with a fixed vector at layer {e['layer']}, {e['n_items']} SST-2 dev: "
            "steerlens vs Hugging Face + hook",
            f"{e['steerlens_vs_hf_hooks']:.2f}x",
            "-",
            f"{es['steerlens']:.1f} vs {es['hf_hooks']:.1f} s (unsteered: {es['steerlens_unsteered']:.1f}"
            f" vs {es['hf_unsteered']:.1f} s); log-probs agree to {e['max_abs_logprob_diff']['hf']:.0e}",
        ),
        (
            "7",
            "evaluation: steerlens with the vector's hooks vs without",
            f"{e['steerlens_hooks_overhead']:.3f}x",
            "<= 1.10x",
            f"{es['steerlens']:.1f} vs {es['steerlens_unsteered']:.1f} s",
        ),
    ]
    if "nnsight" in cs:
        rows += [
            (
                "7",
                f"collection: nnsight {p['nnsight']} vs Hugging Face forward + hooks",
                f"{c['nnsight_vs_hf_hooks']:.2f}x",
                "-",
                f"{cs['nnsight']:.1f} s; steerlens vs nnsight "
                f"{cs['nnsight'] / cs['steerlens']:.2f}x",
            ),
            (
                "7",
                f"steered evaluation: nnsight {p['nnsight']} vs Hugging Face + hook",
                f"{e['nnsight_vs_hf_hooks']:.2f}x",
                "-",
                f"{es['nnsight']:.1f} s; steerlens vs nnsight {es['nnsight'] / es['steerlens']:.2f}x",
            ),
        ]
    rows += [
        (
            "7",
            f"generation, {g['n_prompts']} prompts x up to {g['max_new_tokens']} new tokens: "
            "steered (vector at every position) vs unsteered, decoding steps per second",
            f"{g['steered_vs_unsteered']:.3f}x",
            ">= 0.9x",
            f"{gs['steered']:.1f} vs {gs['unsteered']:.1f} positions/s after the first token "
            f"(prefill + first token: {g['prefill_steered_vs_unsteered']:.2f}x; generated tokens: "
            f"{g['tokens']['steered']} vs {g['tokens']['unsteered']})",
        ),
        (
            "7",
            "generation: steerlens unsteered vs Hugging Face generate, decoding steps per second",
            f"{g['unsteered_vs_hf_generate']:.2f}x",
            "-",
            f"{gs['unsteered']:.1f} vs {gs['hf_generate']:.1f} per s",
        ),
    ]
    return rows


def few_shot_rows(f: dict[str, Any] | None) -> list[Row]:
    """Section 8: 4-shot prompts with one shared demonstration set against zero-shot."""
    if not f:
        return []
    rows = f["rows"]
    zero = rows["0-shot"]["ms_per_item"]
    out: list[Row] = []
    for label, row in rows.items():
        if label == "0-shot":
            continue
        ratios = {k: v / zero[k] for k, v in row["ms_per_item"].items()}
        shared = "shared" in label
        out.append(
            (
                "8",
                f"{label} ({row['prompt_tokens']:.0f}-token prompts) vs 0-shot "
                f"({rows['0-shot']['prompt_tokens']:.0f}), {f['n']} {f['task']} items: "
                "collection / evaluation / SADI sweep",
                " / ".join(f"{v:.2f}x" for v in ratios.values()),
                "<= 1.5x" if shared else "-",
                " / ".join(f"{v:.0f}" for v in row["ms_per_item"].values()) + " ms per item",
            )
        )
    return out


def end_to_end_rows(e: dict[str, Any] | None) -> list[Row]:
    """The end-to-end jobs (`end_to_end.py`, run on its own: they take minutes)."""
    if not e:
        return []
    out: list[Row] = []
    for job in e["jobs"]:
        done = job.get("complete", True)  # a job stopped by hand records how far it got
        load = f", load {job['load_average_start']}" if job.get("load_average_start") else ""
        out.append(
            (
                "E",
                f"{job['name']} ({e['date']}{load})",
                f"{job['seconds'] / 60:.1f} min" if done else f"> {job['seconds'] / 60:.1f} min",
                f"<= {job['target_minutes']} min",
                f"`{job['command']}`" + ("" if done else f"; {job['note']}"),
            )
        )
    return out


def report(result: dict[str, Any], out: str | Path) -> None:
    """Print the table and a summary line, and write `result` (the table included) to `out`."""
    text = table(result)
    result["table"] = text.splitlines()
    print()
    print(text)
    print(
        f"\nload average start {result['load_average_start']}, end {result['load_average_end']}; "
        f"{result['total_seconds']:.0f} s; device {result['device']}, "
        f"torch threads {result['torch_threads']}"
    )
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
