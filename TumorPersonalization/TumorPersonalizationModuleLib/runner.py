"""Run the Lib's command line in a subprocess and follow it: the Slicer module's long work, outside the GUI thread.

Nothing here imports Slicer, Qt or VTK, so it is tested with plain pytest. The module's Logic writes the input
nodes to NIfTI files, builds a command with :func:`buildCommand`, starts a :class:`CliJob` and polls it (from a
``qt.QTimer`` in the GUI, from a sleep loop in batch mode); the CLI reports progress as JSON lines on stderr
(``--progress-json``).

Methods are listed once, in :data:`METHODS`. A method is offered as *available* only when the installed CLI
accepts it (:func:`cliCapabilities` reads the CLI's own argument parser), so a Lib older than the module gives a
clear message instead of a crash, and a new method needs one entry here.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Seconds to wait for a cancelled run to stop after SIGTERM before it is killed.
CANCEL_GRACE_S = 5.0


@dataclass(frozen=True)
class Method:
    """One personalization method as the module offers it.

    Attributes
    ----------
    key : str
        Stored in the parameter node (``PersonalizationMethod`` enum value).
    label : str
        Shown in the method combo box.
    cliMethod : str
        Value of the CLI's ``personalize --method``.
    extraFlags : tuple of str
        Flags appended for this variant (e.g. ``--refine``); each must be known to the CLI.
    inputFlags : tuple of str
        Which inputs the CLI takes for this method, among ``--t1 --pet --wm --gm --csf`` (T1Gd and FLAIR always).
    samplesPosterior : bool
        The method writes posterior marginals (``report.json["marginals"]``) and a probabilistic CTV.
    registersAtlas : bool
        The method registers the bundled atlas to the T1 itself: tissue maps are optional on any T1 grid (given,
        Learn-Morph-Infer simulates in them instead of in the atlas).
    """

    key: str
    label: str
    cliMethod: str
    extraFlags: tuple = ()
    inputFlags: tuple = ()
    samplesPosterior: bool = False
    registersAtlas: bool = False


METHODS = {
    m.key: m for m in (
        Method("lmi", "Learn-Morph-Infer (fast)", "lmi", (), ("--t1", "--wm", "--gm", "--csf"), registersAtlas=True),
        Method("lmiRefine", "Learn-Morph-Infer + refinement", "lmi", ("--refine",), ("--t1", "--wm", "--gm", "--csf"),
               registersAtlas=True),
        Method("tmcmc", "TMCMC (Bayesian)", "tmcmc", (), ("--pet", "--wm", "--gm", "--csf"), samplesPosterior=True),
    )
}


@dataclass(frozen=True)
class CliCapabilities:
    """What the installed ``personalize`` command accepts: its ``--method`` choices and its option flags."""

    methods: tuple
    flags: frozenset

    def unavailableReason(self, method: Method) -> str | None:
        """None when the CLI can run ``method``; otherwise a sentence saying why not."""
        if method.cliMethod not in self.methods:
            return (f"{method.label} is not available in this version of TumorPersonalizationLib: its command line "
                    f"accepts --method {', '.join(self.methods) or '(none)'}, not {method.cliMethod}. "
                    f"Choose {', '.join(m.label for m in METHODS.values() if m.cliMethod in self.methods)} instead.")
        missing = [f for f in method.extraFlags if f not in self.flags]
        if missing:
            return f"{method.label} needs the command-line option(s) {', '.join(missing)}, which this version lacks."
        return None


def cliCapabilities() -> CliCapabilities:
    """Read the ``personalize`` sub-command's choices and flags from the Lib's argparse parser (no subprocess).

    Reading the parser itself, rather than a constant kept beside it, means the answer cannot drift from what the
    command line really accepts.
    """
    import argparse

    from TumorPersonalizationLib.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    personalize = subparsers.choices["personalize"]
    flags = frozenset(flag for action in personalize._actions for flag in action.option_strings)
    methodAction = next(a for a in personalize._actions if "--method" in a.option_strings)
    return CliCapabilities(tuple(methodAction.choices or ()), flags)


def buildCommand(method: Method, files: dict, outDir, *, capabilities: CliCapabilities, marginMm: float = 15.0,
                 samples: int | None = None, fast: bool = False, workers: int = 0, randomSeed: int = 0,
                 python: str | None = None) -> list:
    """The argument list that runs one personalization through the CLI.

    Parameters
    ----------
    method : Method
    files : dict
        Input files by CLI flag (``"--t1gd"``, ``"--flair"``, optional ``"--t1"``, ``"--pet"``, ``"--wm"``, ...).
        Inputs the method does not take are left out (e.g. tissue maps for Learn-Morph-Infer, which registers the
        bundled atlas itself).
    outDir : path
        Output folder of the CLI.
    marginMm : float
        Standard-plan margin in mm.
    samples, fast, workers
        TMCMC population per stage (None: the CLI's default), ``--fast``, worker processes (0: all cores).
    randomSeed : int
        The CLI's ``--seed`` (reproducible runs).
    """
    reason = capabilities.unavailableReason(method)
    if reason:
        raise ValueError(reason)
    command = [python or pythonExecutable(), "-m", "TumorPersonalizationLib", "personalize",
               "--method", method.cliMethod, "--t1gd", str(files["--t1gd"]), "--flair", str(files["--flair"])]
    for flag in method.inputFlags:
        if files.get(flag) is not None and flag in capabilities.flags:
            command += [flag, str(files[flag])]
    command += list(method.extraFlags)
    if method.cliMethod == "tmcmc":
        if fast:
            command.append("--fast")
        elif samples:
            command += ["--samples", str(int(samples))]
        if workers and workers > 0:
            command += ["--workers", str(int(workers))]
    for flag, value in (("--margin-mm", f"{marginMm:g}"), ("--seed", str(int(randomSeed)))):
        if flag in capabilities.flags:
            command += [flag, value]
    command += ["--out", str(outDir)]
    command += ["--progress-json"] if "--progress-json" in capabilities.flags else ["--quiet"]
    return command


def pythonExecutable() -> str:
    """The Python that runs the CLI: Slicer's ``PythonSlicer`` inside Slicer, else this interpreter."""
    import shutil

    # Inside Slicer sys.executable may be the application itself; PythonSlicer is its plain interpreter.
    return shutil.which("PythonSlicer") or sys.executable


def childEnvironment() -> dict:
    """Environment for the CLI: the folder holding TumorPersonalizationLib first on PYTHONPATH, no GUI backend."""
    import TumorPersonalizationLib

    libParent = str(Path(TumorPersonalizationLib.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([libParent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["MPLBACKEND"] = "Agg"  # the CLI writes PNGs; it must never try to open a window
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"  # what the reader threads decode, whatever the system locale says
    return env


def parseProgressLine(line: str):
    """``(fraction, message)`` from a ``--progress-json`` line, or None for any other line."""
    line = line.strip()
    if not (line.startswith("{") and '"progress"' in line):
        return None
    try:
        record = json.loads(line)
        return float(record["progress"]), str(record.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class CliJob:
    """One CLI run in its own process group, followed without blocking.

    Call :meth:`poll` regularly (it returns at once); read :attr:`progress`, :attr:`message`, :attr:`finished`,
    :attr:`returncode`. :meth:`cancel` stops the run and its worker processes.
    """

    command: list
    env: dict | None = None
    progress: float = 0.0
    message: str = "starting"
    returncode: int | None = None
    stdout: str = ""
    stderrLines: list = field(default_factory=list)
    cancelled: bool = False

    def __post_init__(self):
        self._lines = queue.Queue()
        self._stdoutChunks = []
        popenKw = {}
        if os.name == "posix":
            popenKw["start_new_session"] = True  # its own process group: cancel reaches the worker processes too
        else:
            popenKw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        self.startTime = time.monotonic()
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL, env=self.env, text=True, bufsize=1,
                                         # A byte that does not decode must not kill a reader thread (the child
                                         # would then block on a full pipe): it is replaced.
                                         encoding="utf-8", errors="replace", **popenKw)
        self._threads = [threading.Thread(target=self._read, args=(self._process.stderr, True), daemon=True),
                         threading.Thread(target=self._read, args=(self._process.stdout, False), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, isStderr):
        # Reader threads only queue lines; all state changes happen in poll(), on the caller's thread.
        for line in stream:
            if isStderr:
                self._lines.put(line)
            else:
                self._stdoutChunks.append(line)
        stream.close()

    @property
    def finished(self) -> bool:
        return self.returncode is not None

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and not self.cancelled

    @property
    def elapsedS(self) -> float:
        return time.monotonic() - self.startTime

    def poll(self) -> bool:
        """Take in what the process printed; True once it has exited and its output has been read."""
        self._drain()
        if self.returncode is None and self._process.poll() is not None:
            for thread in self._threads:
                thread.join(timeout=5.0)
            self._drain()
            self.stdout = "".join(self._stdoutChunks)
            self.returncode = self._process.returncode
        return self.finished

    def _drain(self):
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            parsed = parseProgressLine(line)
            if parsed is None:
                if line.strip():
                    self.stderrLines.append(line.rstrip("\n"))
            else:
                self.progress, self.message = parsed

    def wait(self, timeoutS: float | None = None, pollS: float = 0.1, callback=None) -> bool:
        """Poll until finished (True) or ``timeoutS`` passed (False); ``callback(job)`` after each poll."""
        deadline = None if timeoutS is None else time.monotonic() + timeoutS
        while not self.poll():
            if callback is not None:
                callback(self)
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(pollS)
        if callback is not None:
            callback(self)
        return True

    def cancel(self) -> None:
        """Stop the run and every process it started; returns when they have exited."""
        self.cancelled = True
        if self._process.poll() is None:
            self._signal(signal.SIGTERM if os.name == "posix" else signal.CTRL_BREAK_EVENT)
            try:
                self._process.wait(timeout=CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL if os.name == "posix" else None)
                self._process.wait()
        self.poll()

    def _signal(self, sig):
        if os.name == "posix":
            try:
                os.killpg(self._process.pid, sig)
            except ProcessLookupError:
                pass
        elif sig is None:
            self._process.kill()
        else:
            self._process.send_signal(sig)

    def errorMessage(self) -> str:
        """What went wrong, in one or a few lines: the CLI's ``error: ...`` line when there is one."""
        if self.cancelled:
            return "cancelled"
        errors = [line[len("error: "):] for line in self.stderrLines if line.startswith("error: ")]
        if errors:
            return errors[-1]
        tail = "\n".join(self.stderrLines[-6:])
        return f"the personalization stopped with exit code {self.returncode}" + (f":\n{tail}" if tail else "")
