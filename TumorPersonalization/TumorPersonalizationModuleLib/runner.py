"""Run the Lib's command line in a subprocess and follow it: the Slicer module's long work, outside the GUI thread.

Nothing here imports Slicer, Qt or VTK, so it is tested with plain pytest. The module's Logic writes the input
nodes to NIfTI files, builds a command with :func:`buildCommand`, starts a :class:`CliJob` and polls it (from a
``qt.QTimer`` in the GUI, from a sleep loop in batch mode); the CLI reports progress as JSON lines on stderr
(``--progress-json``).

The methods come from the Lib's registry (:func:`listMethods`, what ``methods --json`` prints): a method
registered in the Lib appears in the panel with no change here.
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

from TumorPersonalizationLib.personalization.quality import POOR_FIT_EXIT_CODE

# Seconds to wait for a cancelled run to stop after SIGTERM before it is killed.
CANCEL_GRACE_S = 5.0



@dataclass(frozen=True)
class Method:
    """One personalization method as the panel offers it: a preset ("variant") of a registered Lib method.

    Attributes
    ----------
    key : str
        Stored in the parameter node (``PersonalizationMethod`` enum value).
    label : str
        Shown in the method combo box.
    cliMethod : str
        The registered method: the CLI's ``personalize --method``.
    extraFlags : tuple of str
        The variant's settings as flags (e.g. ``--refine``).
    inputFlags : tuple of str
        Which inputs the method takes besides T1Gd and FLAIR, among ``--t1 --pet --wm --gm --csf ...``.
    settingFlags : frozenset of str
        The method's settings that the CLI takes as flags (``--samples``, ``--margin-mm``, ...).
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
    settingFlags: frozenset = frozenset()
    samplesPosterior: bool = False
    registersAtlas: bool = False


def listMethods() -> list:
    """The Lib's method registry as ``python -m TumorPersonalizationLib methods --json`` prints it (its
    ``"methods"`` list). Read in-process: the registry imports neither numpy nor torch, and the CLI that runs the
    method is this same Lib (:func:`childEnvironment`)."""
    from TumorPersonalizationLib import methods

    return methods.available()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def methodsFromListing(listing: list) -> dict:
    """The panel's methods, by key: one per variant of each listed method."""
    out = {}
    for entry in listing:
        inputs = entry["inputs"]["required"] + entry["inputs"]["optional"]
        settingFlags = frozenset(field["flag"] for field in entry["settings"] if field["flag"])
        for variant in entry["variants"]:
            extra = []
            for name, value in variant["settings"].items():
                if _flag(name) not in settingFlags:
                    raise ValueError(f"variant {variant['key']} sets {name}, which is not a command-line flag")
                extra += [_flag(name)] if value is True else [_flag(name), str(value)]
            out[variant["key"]] = Method(
                variant["key"], variant["label"], entry["name"], tuple(extra),
                tuple(_flag(k) for k in inputs if k not in ("t1gd", "flair")), settingFlags,
                samplesPosterior=entry["samples_posterior"], registersAtlas="t1" in entry["inputs"]["required"])
    return out


METHODS = methodsFromListing(listMethods())
"""Every method the installed Lib registers, as the panel offers them."""


def buildCommand(method: Method, files: dict, outDir, *, marginMm: float = 15.0, samples: int | None = None,
                 fast: bool = False, workers: int = 0, randomSeed: int = 0, python: str | None = None) -> list:
    """The argument list that runs one personalization through the CLI.

    Parameters
    ----------
    method : Method
    files : dict
        Input files by CLI flag (``"--t1gd"``, ``"--flair"``, optional ``"--t1"``, ``"--pet"``, ``"--wm"``, ...).
        Inputs the method does not take are left out.
    outDir : path
        Output folder of the CLI.
    marginMm : float
        Standard-plan margin in mm.
    samples, fast, workers, randomSeed
        ``--samples`` (None: the method's default), ``--fast``, ``--workers`` (0: all cores), ``--seed``; each
        given only to methods that have the setting.
    """
    command = [python or pythonExecutable(), "-m", "TumorPersonalizationLib", "personalize",
               "--method", method.cliMethod, "--t1gd", str(files["--t1gd"]), "--flair", str(files["--flair"])]
    for flag in method.inputFlags:
        if files.get(flag) is not None:
            command += [flag, str(files[flag])]
    command += list(method.extraFlags)
    wanted = [("--margin-mm", f"{marginMm:g}"), ("--seed", str(int(randomSeed)))]
    if fast:
        wanted.append(("--fast", None))
    elif samples:
        wanted.append(("--samples", str(int(samples))))
    if workers and workers > 0:
        wanted.append(("--workers", str(int(workers))))
    for flag, value in wanted:
        if flag in method.settingFlags:
            command += [flag] if value is None else [flag, value]
    command += ["--out", str(outDir), "--progress-json"]
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
        """The run wrote its results (exit 0, or 3: written, but the fit is poor and a warning says so)."""
        return self.returncode in (0, POOR_FIT_EXIT_CODE) and not self.cancelled

    @property
    def warnings(self) -> list:
        """The CLI's ``warning: ...`` lines (e.g. a poor fit)."""
        return [line[len("warning: "):] for line in self.stderrLines if line.startswith("warning: ")]

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
