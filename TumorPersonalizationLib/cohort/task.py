"""What a Dask worker runs for one patient: read, personalize, write the patient's folder, return its summary row.

The task never raises for a patient's own problem (an unreadable file, a method error): it returns a ``failed``
row with the message, so one patient cannot stop a cohort. It raises only when the run is being stopped
(:class:`~..errors.Cancelled`), and then has written nothing.

Inner parallelism: a method whose settings have ``dask_scheduler`` (TMCMC's forward runs) gets a client of the
same cluster from :func:`distributed.worker_client`, which also secedes this task from the worker's thread pool
while it waits, so the cluster's threads run the patient's simulations instead of idling. The client side keeps
at most as many patients in flight as the cluster has threads (:mod:`.run`), so seceded tasks do not let every
patient of the cohort start at once.
"""
from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..files import write_json
from . import record, summary
from .layouts import Patient, read_case

EXECUTION_SETTINGS = ("workers", "dask_scheduler")
"""Method settings the cohort decides (where the forward runs go), not the user: they are not recorded either,
since they change where results are computed, not the results."""

PROGRESS_TOPIC = "tumorpersonalization-cohort"
"""Dask event topic the tasks report their stages on (``{"run", "patient", "message"}``)."""
CANCEL_CHECK_S = 1.0
"""How often a task asks the scheduler whether the run was stopped (each check is a round trip)."""


@dataclass(frozen=True)
class Job:
    """One patient's task: what to run and where to write.

    Attributes
    ----------
    patient : Patient
    method : str
    settings : dict
        The method's settings without :data:`EXECUTION_SETTINGS` (JSON values, as recorded).
    out_root : Path
        The cohort's results folder; the patient's folder is ``out_root / patient.name``.
    run_id : str
        Names this run's progress messages and its stop signal on the cluster.
    """

    patient: Patient
    method: str
    settings: dict
    out_root: Path
    run_id: str


class _ClusterStop:
    """``is_set()`` of the run's :class:`distributed.Event`, asked at most every :data:`CANCEL_CHECK_S` seconds
    (the :class:`~..personalization.Progress` of a method calls it at every report)."""

    def __init__(self, name: str):
        from distributed import Event

        self._event, self._checked, self._set = Event(name), 0.0, False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._checked >= CANCEL_CHECK_S:
            self._checked = now
            try:
                self._set = self._event.is_set()
            except Exception:  # the scheduler is going away: the run is over anyway
                self._set = True
        return self._set


def stop_event_name(run_id: str) -> str:
    return f"{PROGRESS_TOPIC}-stop-{run_id}"


def _on_worker():
    """The Dask worker running this task, or None outside one (a direct call, e.g. in tests)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _stage_reporter(worker, job: Job):
    """A progress callback that sends each new stage message of the method to the client's log."""
    last = [None]

    def report(fraction: float, message: str | None = None) -> None:
        if worker is not None and message is not None and message != last[0]:
            last[0] = message
            worker.log_event(PROGRESS_TOPIC, {"run": job.run_id, "patient": job.patient.name, "message": message})
    return report


def run(job: Job) -> dict:
    """Personalize ``job.patient`` and publish its folder; returns the summary row (``status`` ok or failed).

    The returned row also carries ``"traceback"`` for a failure (for the client's log; not a CSV column).
    """
    from ..errors import Cancelled, InputError

    started = time.perf_counter()
    seconds = {}
    try:
        row = _personalize(job, seconds)
    except Cancelled:
        raise
    except Exception as error:  # one patient's failure is recorded and the cohort goes on
        seconds["total"] = time.perf_counter() - started
        message = str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
        row = summary.failed_row(job.patient, message, job.method, seconds)
        row["traceback"] = traceback.format_exc()
    return row


def _personalize(job: Job, seconds: dict) -> dict:
    from .. import methods

    clock = time.perf_counter()
    worker = _on_worker()
    case = read_case(job.patient)
    inputs = record.fingerprint(job.patient.paths())
    lesion_ml = {name: float(getattr(case, key).array.sum() * case.geometry.voxel_volume_ml)
                 for name, key in (("T1Gd", "t1gd"), ("FLAIR", "flair"))}
    seconds["reading"] = time.perf_counter() - clock
    stop = _ClusterStop(stop_event_name(job.run_id)) if worker is not None else None
    fields = {f["name"] for f in methods.get(job.method).Settings.describe()}
    with _cluster_client(worker, "dask_scheduler" in fields) as client:
        # Outside a worker (a direct call) the forward runs stay in this process rather than in a pool of all cores.
        extra = {"dask_scheduler": client} if client is not None else (
            {"workers": 1} if worker is None and "workers" in fields else {})
        settings = methods.make_settings(job.method, job.settings, **extra)
        clock = time.perf_counter()
        result = methods.personalize(case, job.method, settings=settings, progress=_stage_reporter(worker, job),
                                     cancel=stop)
    seconds["personalization"] = time.perf_counter() - clock
    method_stages = {k: v for k, v in result.report.get("timings_s", {}).items() if k != "total_s"}
    clock = time.perf_counter()
    staging = record.staging_folder(job.out_root, job.patient.name)
    try:
        report = result.write(staging)
        seconds["writing"] = time.perf_counter() - clock
        seconds["total"] = sum(seconds[k] for k in ("reading", "personalization", "writing"))
        row = summary.result_row(job.patient, report, lesion_ml,
                                 {"reading": seconds["reading"], **method_stages,
                                  "personalization": seconds["personalization"], "writing": seconds["writing"],
                                  "total": seconds["total"]})
        write_json({"patient": job.patient.name, "method": job.method, "settings": job.settings,
                    "inputs": inputs, "row": row}, staging / record.RECORD_NAME)
        record.publish(staging, job.out_root / job.patient.name)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return row


@contextlib.contextmanager
def _cluster_client(worker, wanted: bool):
    """A client of this worker's cluster for the method's inner parallelism (the task secedes meanwhile), or None
    outside a worker or when the method has no use for one."""
    if worker is None or not wanted:
        yield None
        return
    from distributed import worker_client

    with worker_client() as client:
        yield client
