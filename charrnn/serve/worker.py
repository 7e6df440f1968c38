"""One worker per loaded model: it owns the model's generation engine and steps every active row; a
Driver steps all the workers in one loop.

Requests (jobs) wait in a bounded queue and join the batch between chunks while fewer than `max_batch`
rows are active; a row leaves the moment it finishes, and a job whose client went away is discarded at
the next chunk. Each row's output goes back to the request's asyncio queue with
`loop.call_soon_threadsafe`, so the event loop never waits on the model.

`charrnn serve` runs the Driver on the main thread and the HTTP server on another: PyTorch's OpenMP
threads keep their team of the main thread warm between the many small parallel regions of a step, and
one stream stepped from a second thread ran at 0.76x (1,190 against 1,567 chars/s at 2x512 here).
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

from charrnn.api import Model
from charrnn.engine import Sampling, TextRow, stop_symbols

# steps between a row's pieces of text: 16 steps of a 2x512 LSTM take about 13 ms on 2 cores, a latency
# nobody reading sees, and 4x fewer events than 4 steps (each costs a JSON encoding and a write)
CHUNK = 16
FIRST_CHUNK = 4  # right after requests joined: their first text comes sooner (time to first character)


class Busy(Exception):
    """The waiting queue is full: answer 429."""


@dataclass
class Choice:
    """One completion a job asks for."""

    index: int
    prompt: str
    key: int  # its random stream (engine.row_key)
    row: TextRow | None = None
    first_at: float | None = None  # when its first text came out
    last_at: float | None = None  # when its latest text came out
    traced: int = 0  # the row's trace entries (logprobs) already sent with its text


@dataclass
class Job:
    """One request: its choices, their settings, and where their events go."""

    choices: list[Choice]
    sampling: Sampling
    length: int
    stops: tuple[str, ...]
    alternatives: int
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    created: float = field(default_factory=time.perf_counter)
    started: float | None = None
    cancelled: bool = False
    remaining: int = 0

    def send(self, event: tuple) -> None:
        """From the worker thread: hand an event to the request's coroutine."""
        if not self.cancelled:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Worker:
    def __init__(self, name: str, model: Model, max_batch: int, max_queue: int, metrics=None):
        self.model_name = name
        self.model = model
        self.engine = model.engine
        self.engine.chunk = CHUNK
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.metrics = metrics
        self._waiting: deque[Job] = deque()
        self._queued_rows = 0  # the choices of the waiting jobs
        self._active = 0  # the choices started and not finished
        self._jobs: list[Job] = []  # admitted, not finished
        self._lock = threading.Lock()
        self._wake = threading.Event()  # the Driver's, once it drives this worker
        self._stopping = threading.Event()
        self.failed: BaseException | None = None
        self.alive = False  # a Driver is stepping it

    # -- from the event loop
    def submit(self, job: Job) -> None:
        """Queue a job: taken while the batch has room for it and the jobs before it, or while fewer than
        `max_queue` wait; Busy otherwise. At most max_queue + max_batch jobs ever wait."""
        with self._lock:
            rows = self._queued_rows + len(job.choices)
            room = self.running + rows <= self.max_batch
            if not room and len(self._waiting) >= self.max_queue:
                raise Busy
            self._waiting.append(job)
            self._queued_rows = rows
        self._wake.set()

    def cancel(self, job: Job) -> None:
        """The client went away: a waiting job leaves the queue now, a running one's rows at the next
        chunk."""
        job.cancelled = True
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                self._queued_rows -= len(job.choices)
        self._wake.set()

    def stop(self) -> None:
        """End every running job now (each choice finishes with "length"): the Driver stops stepping it."""
        self._stopping.set()
        self._wake.set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Completions being generated (kept by the worker itself: the engine's lists change under a
        reader on another thread)."""
        return self._active

    # -- on the Driver's thread
    def step(self) -> bool:
        """Admit waiting jobs, drop abandoned ones, step one chunk; False when there was nothing to do."""
        joined = self._admit()
        self._drop_cancelled()
        if not self.engine.active:
            return False
        self.engine.chunk = FIRST_CHUNK if joined or self._waiting else CHUNK
        self.engine.advance()
        if self.metrics is not None:
            self.metrics.update(self)
        return True

    def _admit(self) -> int:
        """Start waiting jobs, in order, while each fits in the batch (one that is larger than the whole
        batch runs alone); how many started."""
        started = 0
        while True:
            with self._lock:
                if not self._waiting:
                    return started
                job = self._waiting[0]
                if self.running and self.running + len(job.choices) > self.max_batch:
                    return started
                self._waiting.popleft()
                self._queued_rows -= len(job.choices)
            if job.cancelled:
                continue
            try:
                self._start(job)
                started += 1
            except Exception as e:  # a prompt the checks let through but the model cannot read
                job.send(("error", str(e)))
        return started

    def _start(self, job: Job) -> None:
        engine = self.engine
        stops = stop_symbols(engine.symbols, job.stops)
        job.started = time.perf_counter()
        job.remaining = len(job.choices)
        for choice in job.choices:
            row = TextRow(
                engine.start(choice.prompt),
                job.sampling,
                choice.key,
                engine.symbols,
                job.length,
                stops,
                on_text=lambda piece, c=choice: self._piece(job, c, piece),
                keep=False,
                on_done=lambda row, c=choice: self._done(job, c, row),
                alternatives=job.alternatives,
            )
            choice.row = row
            engine.add(row)
        with self._lock:
            self._active += len(job.choices)
        self._jobs.append(job)

    def _piece(self, job: Job, choice: Choice, piece: str) -> None:
        now = time.perf_counter()
        if self.metrics is not None:
            if choice.first_at is None:
                self.metrics.first_text(now - job.created)
            else:
                self.metrics.gap((now - choice.last_at) / max(1, len(piece)))
        if choice.first_at is None:
            choice.first_at = now
        choice.last_at = now
        entries = None
        row = choice.row
        if row is not None and row.trace is not None:  # logprobs: the entries of this piece's symbols
            count = len(piece.encode("utf-8")) if self.engine.vocab.is_bytes else len(piece)
            entries = row.trace[choice.traced : choice.traced + count]
            choice.traced += count
        job.send(("text", choice.index, piece, entries))

    def _done(self, job: Job, choice: Choice, row: TextRow) -> None:
        with self._lock:
            self._active -= 1
        job.send(("done", choice.index, row.finish or "length", row.written, row.trace))
        if self.metrics is not None:
            self.metrics.generated(row.written)
        job.remaining -= 1
        if job.remaining == 0 and job in self._jobs:
            self._jobs.remove(job)

    def _drop_cancelled(self) -> None:
        gone = [job for job in self._jobs if job.cancelled]
        for job in gone:
            rows = [c.row for c in job.choices if c.row is not None and c.row.finish is None]
            self.engine.discard(rows)
            with self._lock:
                self._active -= len(rows)
            self._jobs.remove(job)
            if self.metrics is not None:
                self.metrics.disconnected()

    def _finish_all(self) -> None:
        """On shutdown: every running choice ends with the text it has ("length"), the characters it held
        back (a possible stop string's start) included; waiting jobs get an error."""
        for job in list(self._jobs):
            for choice in job.choices:
                row = choice.row
                if row is not None and row.finish is None:
                    row._emit(row.pending, final=True)
                    row.pending = row.symbols.empty
                    job.send(("done", choice.index, "length", row.written, row.trace))
            self.engine.discard([c.row for c in job.choices if c.row is not None])
        self._jobs.clear()
        with self._lock:
            self._active = 0
        self._fail_waiting("the server is shutting down")

    def fail(self, message: str) -> None:
        """The model failed: every job, running or waiting, gets an error (they would wait forever)."""
        for job in list(self._jobs):
            job.send(("error", message))
            self.engine.discard([c.row for c in job.choices if c.row is not None])
        self._jobs.clear()
        with self._lock:
            self._active = 0
        self._fail_waiting(message)

    def _fail_waiting(self, message: str) -> None:
        with self._lock:
            waiting, self._waiting, self._queued_rows = list(self._waiting), deque(), 0
        for job in waiting:
            job.send(("error", message))


class Driver:
    """Steps every worker in turn until stopped; sleeps while none has work. `run` on the calling thread
    (what `charrnn serve` does, on the main thread), or `start` a thread for it."""

    def __init__(self, workers: list[Worker]):
        self.workers = workers
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        for worker in workers:
            worker._wake = self.wake

    def run(self) -> None:
        for worker in self.workers:
            worker.alive = True
        try:
            while not self.stopping.is_set():
                busy = False
                for worker in self.workers:
                    if worker.failed is None and not worker._stopping.is_set():
                        try:
                            busy = worker.step() or busy
                        except Exception as e:  # this model answers 503 from now on; the fault is logged
                            worker.failed = e
                            traceback.print_exc()
                            worker.fail(f"the model {worker.model_name!r} failed; the server logged why")
                if not busy:
                    self.wake.wait(0.5)
                    self.wake.clear()
        finally:
            for worker in self.workers:
                worker.alive = False
                worker._finish_all()

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="charrnn-driver", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5) -> None:
        for worker in self.workers:
            worker._stopping.set()
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)
