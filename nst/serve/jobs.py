"""Studio jobs: kept in a folder (one sub-folder per job: inputs, job.json, result.png), run one at a
time by a worker thread through nst.run(), watched step by step by an in-process plugin.

A job's folder name is its id, 32 random hex digits; request paths never reach the disk. A job.json read back
at a restart is data: every field is checked, the job's id is its folder's name whatever the file says, and a
folder whose job.json is not a job's is skipped with a note (the others load as usual).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nst.contract.failures import first_line
from nst.contract.hookspecs import hookimpl
from nst.core.progress import Pace
from nst.errors import NSTError
from nst.serve.forms import JobRequest, cli_message

FINISHED = ("done", "error", "cancelled")
STATUSES = ("queued", "running", *FINISHED)
JOB_BYTES = 16 << 20  # a larger job.json is not one the studio wrote
ID = re.compile(r"[0-9a-f]{32}")
INPUT = re.compile(r"(content|style\d{1,2})\.(png|jpg|webp|tif|bmp|gif)")  # the names forms.store_image gives
HISTORY = 400  # loss points kept per job (thinned to every other point beyond this)
INTERRUPTED = "interrupted: the server stopped before this job finished; run it again"


class Cancelled(NSTError):
    """Raised from nst_on_step when the user cancelled the running job (an NSTError, so the plugin host
    lets it through as it is and the run stops cleanly, nst_finish included)."""


@dataclass
class Job:
    """One job. history: [[step, {term: value}], ...]; inputs: file names in the job's folder (content
    first, then styles); input_names: the uploads' display names; rate (steps/s) and left (seconds) as the
    command line's progress shows them, None until known."""

    id: str
    request: JobRequest
    inputs: list[str]
    input_names: list[str]
    created: float = field(default_factory=time.time)
    status: str = "queued"
    step: int = 0
    total: int | None = None
    rate: float | None = None
    left: float | None = None
    losses: dict[str, float | None] = field(default_factory=dict)
    history: list = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    finished: float | None = None

    def __post_init__(self) -> None:
        self.version = 0  # bumped on every change, so watchers know when to send an event
        self.preview_version = 0
        self.preview: bytes | None = None  # latest intermediate image, PNG, in memory only
        self.cancel = threading.Event()
        self.pace = Pace()

    def record(self) -> dict[str, Any]:
        """What job.json keeps."""
        data = asdict(self)
        data["request"] = asdict(self.request)
        return data

    @classmethod
    def from_record(cls, job_id: str, data: Any) -> Job:
        """The job JOB_ID (its folder's name) from what its job.json holds; ValueError naming the first field that
        is not what the studio writes."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        request = data.get("request")
        if not isinstance(request, dict) or set(request) != {"fields", "plugins", "sets"} or not (
                _texts(request["fields"]) and _strings(request["plugins"]) and _strings(request["sets"])):
            raise ValueError("request")
        checks = {"inputs": lambda v: _strings(v) and v and all(INPUT.fullmatch(n) for n in v),
                  "input_names": lambda v: _strings(v) and len(v) == len(data.get("inputs") or []),
                  "created": _number, "status": lambda v: v in STATUSES, "step": _whole,
                  "total": lambda v: v is None or _whole(v), "error": lambda v: v is None or isinstance(v, str),
                  "losses": lambda v: isinstance(v, dict) and all(x is None or _number(x) for x in v.values()),
                  "history": lambda v: isinstance(v, list) and all(
                      isinstance(h, list) and len(h) == 2 and _whole(h[0]) and isinstance(h[1], dict) for h in v),
                  "notes": _strings, "finished": lambda v: v is None or _number(v),
                  "summary": lambda v: isinstance(v, dict) and all(isinstance(x, (int, float, str, bool)) for x in v.values())}
        values = {}
        for name, check in checks.items():
            if name in data or name in ("inputs", "input_names"):
                if not check(data.get(name)):
                    raise ValueError(name)
                values[name] = data[name]
        return cls(job_id, JobRequest(dict(request["fields"]), list(request["plugins"]), list(request["sets"])),
                   **values)

    def public(self, history: bool = True) -> dict[str, Any]:
        """The job as the API shows it."""
        data = self.record()
        if not history:
            data.pop("history")
        data["preview"] = f"/api/jobs/{self.id}/preview?v={self.preview_version}" if self.preview_version else None
        data["result"] = f"/api/jobs/{self.id}/result" if self.status == "done" else None
        return data


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _texts(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite(value: float) -> float | None:
    """VALUE for JSON (which has no NaN or infinity)."""
    return float(value) if math.isfinite(value) else None


class JobStore:
    """Every job of a data folder, in memory and on disk (DATA/jobs/ID/job.json, written atomically)."""

    def __init__(self, data: Path) -> None:
        self.root = Path(data) / "jobs"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NSTError(f"{data}: cannot be the studio's data folder ({exc.strerror or exc})") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise NSTError(f"{data}: cannot be the studio's data folder (not writable)")
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()

    def load(self) -> list[str]:
        """Read the jobs on disk; those a stopped server left queued or running become errors. Returns a
        note per job folder that could not be read."""
        notes = []
        for folder in sorted(self.root.iterdir()):
            if not (folder.is_dir() and ID.fullmatch(folder.name)) or folder.is_symlink():
                continue
            try:
                path = folder / "job.json"
                if path.is_symlink() or path.stat().st_size > JOB_BYTES:
                    raise ValueError("not a job.json the studio wrote")
                job = Job.from_record(folder.name, json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, RecursionError) as exc:
                reason = "unreadable" if isinstance(exc, OSError) else f"damaged: {str(exc)[:60] or 'not JSON'}"
                notes.append(f"{folder}: skipped, not a job the studio can read ({reason})")
                continue
            if job.status not in FINISHED:
                job.status, job.error, job.finished = "error", INTERRUPTED, time.time()
                self.save(job)
            self.jobs[job.id] = job
        return notes

    def folder(self, job_id: str) -> Path:
        if not ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def new_folder(self) -> tuple[str, Path]:
        """A fresh random id and its (new, empty) folder."""
        while True:
            job_id = secrets.token_hex(16)
            try:
                (self.root / job_id).mkdir()
                return job_id, self.root / job_id
            except FileExistsError:
                continue

    def discard(self, job_id: str) -> None:
        """Remove the folder of a job that was never added (its upload was refused)."""
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def add(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job
            self.save(job)

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) if ID.fullmatch(job_id) else None

    def listing(self) -> list[Job]:
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)

    def save(self, job: Job) -> None:
        from nst.core.files import atomic_path

        with self.lock:
            job.version += 1
            text = json.dumps(job.record(), indent=1)
            with atomic_path(self.folder(job.id) / "job.json") as tmp:
                tmp.write_text(text)

    def progress(self, job: Job, step: int, total: int | None, losses: dict[str, float], preview: bytes | None) -> None:
        """Record a step (in memory; job.json is written when the status changes)."""
        with self.lock:
            job.step, job.total = step, total
            job.rate, job.left = job.pace.update(step, total)
            job.losses = {k: finite(v) for k, v in losses.items()}
            job.history.append([step, job.losses])
            if len(job.history) > HISTORY:
                job.history = job.history[::2]
            if preview is not None:
                job.preview, job.preview_version = preview, job.preview_version + 1
            job.version += 1


def png_bytes(image) -> bytes:
    """A (B, 3, h, w) image (any range) as PNG bytes of its first item."""
    from nst.core.images import to_pil

    buffer = io.BytesIO()
    to_pil(image[:1].detach().float().clamp(0, 1).cpu()).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class ProgressRecorder:
    """In-process plugin taking part in every studio run: records step, losses and (at most every
    PREVIEW_SECONDS, and at the last step) a preview; stops the run when its job is cancelled."""

    name = "studio-progress"

    def __init__(self, store: JobStore, preview_seconds: float = 0.25) -> None:
        self.store, self.preview_seconds = store, preview_seconds
        self.job: Job | None = None
        self._last = 0.0

    def watch(self, job: Job) -> None:
        """Record the steps of JOB from now on (its first step brings a preview at once)."""
        self.job, self._last = job, 0.0

    @hookimpl
    def nst_on_step(self, ctx, step, image, losses) -> None:
        job = self.job
        if job is None:
            return
        if job.cancel.is_set():
            raise Cancelled("cancelled")
        now = time.monotonic()
        due = now - self._last >= self.preview_seconds or step == ctx.total_steps
        if due:
            self._last = now
        self.store.progress(job, step, ctx.total_steps, losses, png_bytes(image) if due else None)


class Worker:
    """Runs queued jobs one at a time on DEVICE in a thread of its own; BUSY is held while a job runs (time
    estimates never probe the device beside a job)."""

    def __init__(self, store: JobStore, host, device: str, preview_seconds: float = 0.25) -> None:
        self.store, self.host, self.device = store, host, device
        self.recorder = ProgressRecorder(store, preview_seconds)
        self.queue: deque[Job] = deque()
        self.wake = threading.Condition(store.lock)
        self.busy = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="nst-studio-worker", daemon=True)

    def start(self) -> None:
        """Register the recorder (once, so runs never change the host while requests read it) and start."""
        self.host.register(self.recorder)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the running job (which is cancelled and recorded as interrupted)."""
        with self.wake:
            self.stopping = True
            for job in self.queue:
                job.status, job.error, job.finished = "error", INTERRUPTED, time.time()
                self.store.save(job)
            self.queue.clear()
            if self.recorder.job is not None:
                self.recorder.job.cancel.set()
            self.wake.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.host.unregister(self.recorder.name)

    def waiting(self) -> int:
        return len(self.queue)

    def submit(self, job: Job) -> None:
        with self.wake:
            self.store.add(job)
            self.queue.append(job)
            self.wake.notify_all()

    def cancel(self, job: Job) -> None:
        """Cancel a queued job now, a running one at its next step (finished jobs are left alone)."""
        with self.wake:
            if job in self.queue:
                self.queue.remove(job)
                job.status, job.finished = "cancelled", time.time()
                self.store.save(job)
            elif job.status == "running":
                job.cancel.set()

    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.queue and not self.stopping:
                    self.wake.wait()
                if self.stopping:
                    return
                job = self.queue.popleft()
                job.status = "running"
                self.recorder.watch(job)
                self.store.save(job)
            try:
                self._run(job)
            finally:
                with self.wake:
                    self.recorder.job = None
                    job.finished = time.time()
                    self.store.save(job)

    def _run(self, job: Job) -> None:
        """One job through nst.run(); its status, error line and summary recorded on the job."""
        from nst.api import run

        folder = self.store.folder(job.id)
        inputs = [folder / name for name in job.inputs]
        arguments = job.request.run_arguments()
        arguments["plugins"].append(self.recorder)

        def note(message: str) -> None:
            job.notes.append(message)

        try:
            with self.busy:
                result = run(inputs[0], inputs[1:], output=folder / "result.png", host=self.host, note=note,
                             device=self.device, **arguments)
        except Cancelled:
            job.status, job.error = ("error", INTERRUPTED) if self.stopping else ("cancelled", None)
            return
        except NSTError as exc:
            job.status, job.error = "error", cli_message(exc)
            return
        except MemoryError:
            job.status, job.error = "error", "out of memory; use a smaller size"
            return
        except Exception as exc:  # a bug must not stop the worker: the job reports it as the CLI would
            if os.environ.get("NST_DEBUG"):
                import traceback

                traceback.print_exc()
            job.status, job.error = "error", f"unexpected failure ({first_line(exc)}); set NST_DEBUG=1 for the traceback"
            return
        job.summary = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in result.summary.items()}
        job.status = "done"
