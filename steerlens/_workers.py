"""Local worker processes for independent pieces of work (Python's `concurrent.futures` with
spawned processes: no fork of a process whose torch threads are running).

A worker gets its model from a picklable `load()` (`functools.partial(load_model, name)`: a few
seconds from steerlens' cache) or, without one, as a pickled copy of the caller's model
(`model_source`; a TransformerLens 4 bridge is loaded again instead).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import torch

from ._backend import HookedTransformer, is_bridge

K = TypeVar("K", bound=Hashable)
ModelSource = HookedTransformer | Callable[[], HookedTransformer]

_LOADED: dict[int, HookedTransformer] = {}


def model_source(
    model: HookedTransformer, load: Callable[[], HookedTransformer] | None
) -> ModelSource:
    """What a worker gets its model from: `load` if given; a pickled copy of `model` on
    TransformerLens 3; on the 4.x bridge, which cannot be pickled, `load_model` again with the
    arguments that loaded it."""
    if load is not None:
        return load
    if not is_bridge(model):
        return model
    again = getattr(model, "steerlens_load", None)
    if again is None:
        raise ValueError(
            "A TransformerLens 4 bridge cannot be pickled to worker processes: load it with "
            "steerlens.load_model, or pass load= (a picklable function that returns the model)"
        )
    return cast(Callable[[], HookedTransformer], again)


def _start_worker(parent: int, counter: Any, gpus: list[str]) -> None:
    """In a new worker: take the next GPU of `gpus` (round robin; before CUDA starts, so "cuda"
    is that GPU in this process), and exit when the parent does."""
    if gpus:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    _exit_with(parent)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` entries (empty on a CPU)."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _exit_with(parent: int) -> None:
    """In a worker: end this process as soon as the process that started it is gone (killed,
    crashed), instead of computing on for nobody."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


@contextmanager
def pool(workers: int, gpus: list[str] | None = None) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` spawned processes, one GPU each on a machine with several (worker i
    gets `gpus[i mod len(gpus)]`; default `visible_gpus()`). On an error or an interrupt
    (Ctrl-C) the workers are stopped at once; a worker whose parent dies stops by itself."""
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(), context.Value("i", 0), visible_gpus() if gpus is None else gpus),
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
