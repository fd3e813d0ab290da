"""Running a cohort on Dask from the client's side.

The cluster is a :class:`distributed.LocalCluster` sized to this machine (one single-threaded worker process per
CPU this process may use) or a running scheduler given by address. Each patient is one task
(:func:`.task.run`); at most as many patients are in flight as the cluster has threads, so a patient that
secedes to wait for its own simulations does not let the whole cohort start at once, and an interruption loses
at most that many patients' work. Finished patients whose recorded method, settings and inputs match are skipped
(:mod:`.record`). ``summary.csv`` is rewritten after every patient, so it is current even after Ctrl-C.
"""
from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import Cancelled, InputError
from . import layouts, record, summary, task

POLL_S = 0.2
"""How often the client looks for finished patients (and for Ctrl-C or a cancel request) while it waits."""
LOG_NAME = "cohort.log"


@dataclass(frozen=True)
class CohortResult:
    """What a run did: every patient's summary row and the summary files."""

    rows: dict
    computed: tuple
    skipped: tuple
    summary_csv: Path
    summary_png: Path | None

    @property
    def failed(self) -> tuple:
        return tuple(name for name, row in self.rows.items() if row["status"] != "ok")


class _Log:
    """Lines to ``cohort.log`` in the results folder (per-patient stages, failures with tracebacks) and, for the
    ones that matter on a terminal, to stderr above the progress bar."""

    def __init__(self, path: Path, echo: bool):
        self._path, self._echo, self._lock = path, echo, threading.Lock()

    def __call__(self, line: str, *, echo: bool = False, detail: str | None = None) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._lock, open(self._path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line}\n" + (detail if detail else ""))
        if echo and self._echo:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)


def recorded_settings(method: str, settings) -> dict:
    """The method's settings as a run records and compares them: every check run, the execution settings
    (:data:`.task.EXECUTION_SETTINGS`, decided by the cohort) refused when given."""
    from .. import methods

    chosen = methods.make_settings(method, settings)
    for name in task.EXECUTION_SETTINGS:
        if getattr(chosen, name, None) is not None:
            raise InputError(f"settings: {name} is decided by the cohort (each patient's simulations run on the "
                             f"cohort's cluster: choose it with --workers or --scheduler)")
    return {k: v for k, v in chosen.as_dict().items() if k not in task.EXECUTION_SETTINGS}


def open_client(scheduler=None, workers: int | None = None):
    """(client, cluster): a client of the scheduler at ``scheduler`` (an address such as ``tcp://host:8786``, or a
    ``distributed.Client`` used as is, cluster None), else of a new LocalCluster with ``workers`` single-threaded
    worker processes (default: one per CPU this process may use)."""
    from distributed import Client

    if scheduler is not None and not isinstance(scheduler, str):
        return scheduler, None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(f"--scheduler {scheduler}: cannot connect ({error})") from None
    from distributed import LocalCluster

    from ..execution import available_cpus

    # One single-threaded process per CPU: the solver and torch use one core each (Dask already sets
    # OMP_NUM_THREADS=1 in its workers; numba's pool is set here), so N patients use N cores, not N x cores.
    cluster = LocalCluster(n_workers=workers or available_cpus(), threads_per_worker=1, processes=True,
                           dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
    return Client(cluster), cluster


def plan(cohort: layouts.Cohort, method: str, values: dict, out: Path) -> tuple[dict, list, list]:
    """(rows known before running, patients to run, patients skipped as finished): patients missing an input get
    a failed row; finished ones their recorded row."""
    from .. import methods

    module = methods.get(method)
    cohort = layouts.for_method(cohort, module.REQUIRED_INPUTS, module.REQUIRED_INPUTS + module.OPTIONAL_INPUTS)
    rows, todo, skipped = {}, [], []
    for patient in cohort.patients:
        folder = (out / patient.name).resolve()
        for path in patient.paths().values():
            # Publishing a patient's folder replaces it whole: it must never be (or hold) the patient's inputs.
            if folder == path.resolve().parent or folder in path.resolve().parents:
                raise InputError(f"--out {out}: the results of {patient.name} would replace its input folder "
                                 f"({path.parent}); choose another results folder")
        if patient.missing:
            rows[patient.name] = summary.failed_row(patient, f"missing {', '.join(patient.missing)} "
                                                              f"(method {method} reads "
                                                              f"{', '.join(module.REQUIRED_INPUTS)})", method)
            continue
        row = record.finished_row(out / patient.name, method, values, patient.paths())
        if row is not None:
            rows[patient.name] = row
            skipped.append(patient)
        else:
            todo.append(patient)
    return rows, todo, skipped


def run_cohort(cohort: layouts.Cohort, method: str, out, settings=None, *, scheduler=None,
               workers: int | None = None, show_progress: bool = True, on_result=None,
               cancel: threading.Event | None = None) -> CohortResult:
    """Personalize every patient of ``cohort`` with ``method``; each patient's results go to ``out/<patient>/``.

    Parameters
    ----------
    cohort : layouts.Cohort
        From :func:`.layouts.find_patients`.
    method : str
        A registered method.
    out : path
        The results folder: one folder per patient, ``summary.csv``, ``summary.png``, ``cohort.log``.
    settings : dict or Settings, optional
        The method's settings (every patient gets the same).
    scheduler : str or distributed.Client, optional
        A running scheduler's address (``tcp://host:8786``) or a client; default: a LocalCluster.
    workers : int, optional
        LocalCluster worker processes (default: one per CPU).
    show_progress : bool
        A bar over patients and a line per finished patient on stderr.
    on_result : callable(patient, row, folder), optional
        Called on the client for every patient that is ``ok`` (also the ones skipped as finished), e.g. to copy
        the density to a benchmark's layout.
    cancel : threading.Event, optional
        Set it to stop the run like Ctrl-C: finished patients stay, patients in flight are abandoned unwritten;
        raises :class:`~..errors.Cancelled`.
    """
    out = Path(out)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is an existing file; give a folder (it is created if needed)")
    values = recorded_settings(method, settings or {})
    rows, todo, skipped = plan(cohort, method, values, out)
    out.mkdir(parents=True, exist_ok=True)
    record.remove_stale_staging(out)
    log = _Log(out / LOG_NAME, show_progress)
    log(f"run: method {method}, {len(cohort.patients)} patients: {len(skipped)} finished earlier, {len(todo)} to "
        f"run, {len(rows) - len(skipped)} missing inputs; settings {values}")
    by_name = {p.name: p for p in cohort.patients}
    for name in rows:
        if rows[name]["status"] != "ok":
            log(f"{name}: failed: {rows[name]['error']}", echo=True)
        elif on_result is not None:
            on_result(by_name[name], rows[name], out / name)
    csv_path = out / "summary.csv"
    computed = []
    try:
        if todo:
            computed = _run_on_cluster(todo, method, values, out, rows, scheduler, workers, show_progress, log,
                                       on_result, cancel, csv_path)
    finally:
        summary.write_csv(list(rows.values()), csv_path)
        png = summary.write_png(list(rows.values()), out / "summary.png", title=f"{method}, {cohort.source.name}")
    return CohortResult(rows, tuple(computed), tuple(p.name for p in skipped), csv_path, png)


def _run_on_cluster(todo, method, values, out, rows, scheduler, workers, show_progress, log, on_result, cancel,
                    csv_path) -> list:
    from distributed import Event, as_completed
    from tqdm import tqdm

    run_id = uuid.uuid4().hex[:12]
    client, cluster = open_client(scheduler, workers)
    computed, active = [], {}
    bar = tqdm(total=len(todo), desc="patients", unit="patient", disable=not show_progress, file=sys.stderr,
               leave=False)
    stop = None
    try:
        stop = Event(task.stop_event_name(run_id), client=client)
        client.subscribe_topic(task.PROGRESS_TOPIC, lambda event: _log_stage(event, run_id, log))
        window = max(1, sum(client.nthreads().values()))
        log(f"cluster: {client.scheduler.address if client.scheduler else '?'}, {window} threads; "
            f"{min(window, len(todo))} patients in flight at a time")
        queue, finished = list(reversed(todo)), as_completed()

        def submit() -> None:
            if queue:
                patient = queue.pop()
                job = task.Job(patient, method, values, out.resolve(), run_id)
                future = client.submit(task.run, job, key=f"patient-{patient.name}-{run_id}", pure=False)
                active[future] = patient
                finished.add(future)

        for _ in range(window):
            submit()
        while active:
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled")
            if not finished.has_ready():
                time.sleep(POLL_S)
                continue
            for future in finished.next_batch(block=False):
                patient = active.pop(future)
                row = _row_of(future, patient, method, log)
                rows[patient.name] = row
                computed.append(patient.name)
                if row["status"] == "ok" and on_result is not None:
                    on_result(patient, row, out / patient.name)
                summary.write_csv(list(rows.values()), csv_path)
                bar.update(1)
                submit()
    except BaseException:  # Ctrl-C, cancel, or the scheduler gone: stop the patients in flight, write nothing more
        if stop is not None:
            try:
                stop.set()  # tasks on a shared cluster see it at their next progress report
                client.cancel(list(active))
            except Exception:
                pass
        raise
    finally:
        bar.close()
        try:
            client.unsubscribe_topic(task.PROGRESS_TOPIC)  # a client passed in outlives this run
        except Exception:
            pass
        if cluster is not None or isinstance(scheduler, str):  # a client passed in stays the caller's
            client.close()
        if cluster is not None:
            cluster.close()
    return computed


def _log_stage(event, run_id: str, log) -> None:
    _, message = event
    if isinstance(message, dict) and message.get("run") == run_id:
        log(f"{message['patient']}: {message['message']}")


def _row_of(future, patient, method: str, log) -> dict:
    """The patient's row from its finished task; a task that died (its worker killed, e.g. out of memory) gives a
    failed row too (so does one cancelled by another client of a shared cluster)."""
    try:
        row = future.result()
    except Exception as error:  # KilledWorker, CancelledError, ...: the task itself never returned
        row = summary.failed_row(patient, f"{type(error).__name__}: {error}", method)
        log(f"{patient.name}: failed: {row['error']}", echo=True)
        return row
    trace = row.pop("traceback", None)
    if row["status"] == "ok":
        log(f"{patient.name}: ok in {row.get('seconds total', 0):.1f} s", echo=True)
    else:
        log(f"{patient.name}: failed: {row['error']}", echo=True, detail=trace)
    return row
