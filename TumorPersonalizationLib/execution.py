"""Run a batch function over many inputs: in this process, in a local process pool, or on a Dask cluster.

An executor wraps a picklable callable ``function(batch) -> array`` (e.g. a calibration problem mapping parameter
sets to log likelihoods) and offers ``executor(batch)``, which splits the batch into chunks, runs them where the
executor lives and concatenates the results in order. The function is sent to each worker once, not per chunk.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np

from .errors import InputError

_WORKER_FUNCTION = None


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or taskset's), at least 1.

    ``os.cpu_count()`` counts the machine's CPUs: in a container limited to 2 it may say 64, and a default of
    one worker per CPU would then start 64 processes.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform (macOS, Windows)
        return os.cpu_count() or 1


def _install(function) -> None:
    global _WORKER_FUNCTION
    _WORKER_FUNCTION = function


def _run_installed(chunk):
    return _WORKER_FUNCTION(chunk)


def _run(function, chunk):
    return function(chunk)


def _chunks(batch: np.ndarray, n: int) -> list:
    n = max(1, min(n, len(batch)))
    return [c for c in np.array_split(batch, n) if len(c)]


def end_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's worker processes now (ProcessPoolExecutor has no public way to stop running tasks)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


@contextmanager
def process_pool(workers: int, initializer=None, initargs=()):
    """A spawned ProcessPoolExecutor whose workers end with the caller.

    On leaving normally the pool is shut down and waited for; on any exception (Ctrl-C, SIGTERM turned into
    KeyboardInterrupt by :func:`~TumorPersonalizationLib.errors.run_script`, an error in a task) the workers are
    terminated at once. Without this, a killed data-generation script left its workers computing queued shards for
    tens of minutes.
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
                               initargs=initargs)
    try:
        yield pool
    except BaseException:
        end_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_DATASET = None  # (dataset module, its make_shard's leading arguments) in each worker process


def install_dataset(dataset_module: str, *state) -> None:
    """Worker initializer of the dataset scripts: the method's dataset module (by name: modules do not pickle)
    and what its ``make_shard`` takes before the config (base anatomies, tissue maps)."""
    import importlib

    global _DATASET
    _DATASET = (importlib.import_module(dataset_module), state)


def make_dataset_shard(config: dict, split: str, index: int, out) -> dict:
    """Make and write one shard (atomically) with the installed dataset module; returns its bookkeeping: the
    draws, the rejections per reason and the simulation seconds, where the shard records them."""
    import numba

    dataset, state = _DATASET
    # One core per shard: the pool or the cluster provides the parallelism. Thread-local, unlike the environment
    # variable, so the calling process (a test, a Dask worker's other tasks) keeps its own setting.
    numba.set_num_threads(1)
    shard = dataset.make_shard(*state, config, split, index)
    dataset.write_shard(shard, dataset.shard_path(out, split, index))
    return {key: np.asarray(shard[key]).tolist() for key in ("drawn", "rejected", "simulation_seconds")
            if key in shard}

_INSTALLED_STATES = set()


def _call_with_state(key: str, initializer, initargs, function, *args):
    """On a Dask worker: run ``initializer(*initargs)`` once per worker process (per ``key``), then the task."""
    if key not in _INSTALLED_STATES:
        initializer(*initargs)
        _INSTALLED_STATES.add(key)
    return function(*args)


@contextmanager
def task_pool(workers: int, scheduler=None, initializer=None, initargs=()):
    """Run independent tasks (each writes its own file: a dataset shard) on local processes or a Dask cluster.

    Yields ``(submit, completed)``: ``submit(function, *args)`` returns a future, ``completed(futures)`` yields them
    as they finish. Locally it is :func:`process_pool` (``workers`` spawned processes, ``initializer(*initargs)``
    in each). With ``scheduler`` (an address such as ``tcp://host:8786``, or a ``distributed.Client``) the tasks go
    to that cluster: ``initargs`` are sent to every worker once and ``initializer`` runs there before a worker's
    first task; the files are written by the workers, so their paths must be on a file system all of them share.
    On any exception (Ctrl-C, SIGTERM via ``run_script``) the queued tasks are cancelled.
    """
    if scheduler is None:
        from concurrent.futures import as_completed

        with process_pool(workers, initializer, initargs) as pool:
            yield pool.submit, as_completed
        return
    import uuid

    from distributed import Client, as_completed

    if isinstance(scheduler, str):
        try:
            client, owned = Client(scheduler, timeout="10s"), True
        except OSError as exc:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    else:
        client, owned = scheduler, False
    key = uuid.uuid4().hex
    state = client.scatter([tuple(initargs)], broadcast=True)[0] if initializer is not None else None
    submitted = []

    def submit(function, *args):
        if initializer is None:
            future = client.submit(function, *args, pure=False)
        else:
            future = client.submit(_call_with_state, key, initializer, state, function, *args, pure=False)
        submitted.append(future)
        return future

    try:
        yield submit, as_completed
    except BaseException:
        client.cancel(submitted)
        raise
    finally:
        if owned:
            client.close()


class InlineExecutor:
    """Runs the function in the calling process (one core per call unless the function itself is parallel)."""

    def __init__(self, function):
        self.function = function
        self.workers = 1

    def __call__(self, batch):
        return np.asarray(self.function(batch))

    def close(self, abort: bool = False):
        pass


class LocalPoolExecutor:
    """A pool of ``workers`` processes (spawned, so numba's threads never cross a fork)."""

    def __init__(self, function, workers: int | None = None):
        self.workers = workers or available_cpus()
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_install, initargs=(function,))

    def __call__(self, batch):
        chunks = _chunks(np.asarray(batch), 4 * self.workers)
        return np.concatenate([np.asarray(r) for r in self._pool.map(_run_installed, chunks)])

    def close(self, abort: bool = False):
        """Shut the pool down; with ``abort`` (after Ctrl-C, Cancel or an error) stop the running chunks too,
        instead of waiting minutes for them to finish."""
        if abort:
            end_workers(self._pool)
        self._pool.shutdown(wait=not abort, cancel_futures=True)


class DaskExecutor:
    """Chunks run as tasks on a Dask ``distributed`` cluster; the function is scattered to every worker once.

    Parameters
    ----------
    function : picklable callable
    client_or_address : distributed.Client or str
        A client, or a scheduler address such as ``tcp://10.0.0.5:8786``.
    """

    def __init__(self, function, client_or_address):
        from distributed import Client

        if isinstance(client_or_address, str):
            try:
                self.client = Client(client_or_address, timeout="10s")
            except OSError as exc:
                raise InputError(f"--dask-scheduler {client_or_address}: cannot connect ({exc})") from None
            self._owns_client = True
        else:
            self.client, self._owns_client = client_or_address, False
        self.workers = max(1, sum(self.client.nthreads().values()))
        self._function = self.client.scatter(function, broadcast=True)

    def __call__(self, batch):
        chunks = _chunks(np.asarray(batch), 4 * self.workers)
        futures = self.client.map(_run, [self._function] * len(chunks), chunks, pure=False)
        return np.concatenate([np.asarray(r) for r in self.client.gather(futures)])

    def close(self, abort: bool = False):
        if self._owns_client:
            self.client.close()


def make_executor(function, workers: int | None = None, dask_scheduler=None):
    """Dask when a scheduler (address or client) is given, else a process pool, or inline for one worker."""
    if dask_scheduler is not None:
        return DaskExecutor(function, dask_scheduler)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if (workers or available_cpus()) == 1:
        return InlineExecutor(function)
    return LocalPoolExecutor(function, workers)
