"""Local worker processes: balanced parts, and that workers never outlive an error in their parent
or the parent itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from steerlens._workers import balanced, pool


def test_balanced_parts_have_near_equal_cost_and_keep_order() -> None:
    costs = {"a": 9.0, "b": 1.0, "c": 5.0, "d": 4.0, "e": 1.0}
    parts = balanced(costs, 2)
    assert sorted(k for part in parts for k in part) == sorted(costs)
    loads = [sum(costs[k] for k in part) for part in parts]
    assert max(loads) - min(loads) <= 1.0  # 10 against 10
    for part in parts:
        assert part == sorted(part, key=list(costs).index)
    assert balanced({"a": 1.0}, 3) == [["a"]]  # never an empty part


def test_an_error_in_the_parent_stops_the_workers() -> None:
    with pytest.raises(RuntimeError, match="stop"), pool(1) as executor:
        pid = executor.submit(os.getpid).result()
        executor.submit(time.sleep, 60)
        raise RuntimeError("stop")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_worker_stops_when_its_parent_dies(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import os, sys, time
        from steerlens._workers import pool
        with pool(1) as executor:
            print(executor.submit(os.getpid).result(), flush=True)
            executor.submit(time.sleep, 60)
            time.sleep(0.5)
            os._exit(0)  # the parent dies without shutting the pool down
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _gpu_of_this_worker() -> tuple[int, str | None]:
    time.sleep(0.5)  # keep the worker busy so the next task starts the other one
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_each_worker_takes_its_own_gpu() -> None:
    """On a machine with several GPUs each worker sees one (round robin over the visible ones),
    set before CUDA starts in it; with none, nothing is set."""
    with pool(2, gpus=["3", "5"]) as executor:
        seen = dict(f.result() for f in [executor.submit(_gpu_of_this_worker) for _ in range(4)])
    assert sorted(seen.values()) == ["3", "5"]
    with pool(1, gpus=[]) as executor:
        assert executor.submit(_gpu_of_this_worker).result()[1] == os.environ.get(
            "CUDA_VISIBLE_DEVICES"
        )
