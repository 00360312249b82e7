"""Local worker processes for independent pieces of work (Python's `concurrent.futures` with
spawned processes: no fork of a process whose torch threads are running).

A worker gets its model from a picklable `load()` (`functools.partial(load_model, name)`: a few
seconds from steerlens' cache) or, without one, as a pickled copy of the caller's model.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

from ._backend import HookedTransformer

K = TypeVar("K", bound=Hashable)
ModelSource = HookedTransformer | Callable[[], HookedTransformer]

_LOADED: dict[int, HookedTransformer] = {}


def _exit_with(parent: int) -> None:
    """In a worker: end this process as soon as the process that started it is gone (killed,
    crashed), instead of computing on for nobody."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextmanager
def pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` spawned processes. On an error or an interrupt (Ctrl-C) the workers
    are stopped at once; a worker whose parent dies stops by itself."""
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with,
        initargs=(os.getpid(),),
    )
    try:
        yield executor
    except BaseException:
        processes = list(getattr(executor, "_processes", {}).values())  # no public handle
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    executor.shutdown()


def worker_model(source: ModelSource, key: int, threads: int) -> HookedTransformer:
    """In a worker: the model of `source`, loaded once per worker process and `key`."""
    torch.set_num_threads(threads)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = source if isinstance(source, HookedTransformer) else source()
    return _LOADED[key]


def balanced(costs: Mapping[K, float], parts: int) -> list[list[K]]:
    """Split the keys into at most `parts` lists of near-equal total cost (largest first, each
    to the lightest list); keys keep their given order within a list."""
    loads = [0.0] * parts
    owner: dict[K, int] = {}
    for key in sorted(costs, key=lambda k: -costs[k]):
        i = loads.index(min(loads))
        owner[key] = i
        loads[i] += costs[key]
    return [out for i in range(parts) if (out := [k for k in costs if owner[k] == i])]
