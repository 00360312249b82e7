"""End-to-end wall time of the two jobs a researcher starts first, with their default settings.

    python benchmarks/end_to_end.py                  # both: about 5 + 30 minutes on 2 cores
    python benchmarks/end_to_end.py --jobs run       # `steerlens run` only

Each job runs as the command a user types, in a fresh process with an empty output directory, so
that the time includes loading the model and writing the tables. Writes
`benchmarks/end_to_end.json`, which `run.py` adds to its table (these jobs take minutes, so they
are not part of its own run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STEERLENS_DATA", ROOT.parent / "shared" / "data"))

JOBS: dict[str, tuple[list[str], int]] = {  # name -> (command after `steerlens`, target minutes)
    "steerlens run (defaults: sentiment, 4-shot, 7 methods + none)": (["run"], 5),
    "steerlens reproduce, five zero-shot tasks, 2 workers": (
        ["reproduce", "--data", str(DATA), "--shots", "0", "--workers", "2", "--threads", "1"],
        30,
    ),
}


def run_job(name: str, args: list[str], target: int, out: Path) -> dict[str, Any]:
    command = ["steerlens", *args, "--out", str(out)]
    load = [round(x, 2) for x in os.getloadavg()]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds / 60:.1f} min (target {target} min)", flush=True)
    shown = " ".join("../shared/data" if a == str(DATA) else a for a in command[:-2])
    return {
        "name": name,
        "command": shown,
        "seconds": round(seconds, 1),
        "target_minutes": target,
        "load_average_start": load,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", nargs="+", choices=["run", "reproduce"], default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "end_to_end.json"))
    args = parser.parse_args()
    chosen = {
        name: spec for name, spec in JOBS.items() if args.jobs is None or spec[0][0] in args.jobs
    }
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else None
    kept = [j for j in (previous or {}).get("jobs", []) if j["name"] not in chosen]
    results: list[dict[str, Any]] = []
    for name, (cmd, target) in chosen.items():
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_job(name, cmd, target, Path(tmp) / "out"))
            shutil.rmtree(tmp, ignore_errors=True)
        report = {  # after each job, so that stopping a later one keeps this one
            "date": time.strftime("%Y-%m-%d"),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jobs": kept + results,
        }
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
