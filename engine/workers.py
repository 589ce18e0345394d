"""The worker threads that run all inference off the event loop, shared by every stream of a process.

    stream A ─┐                          ┌─▶ Whisper pass (the least-served stream's first)
    stream B ─┼─ FairScheduler.run ──────┤   on `asr_workers` threads
    stream C ─┘                          └─▶ ...
    stream A ─┐
    stream B ─┼─ ScoreBatcher.score / .analyze ─▶ one thread: a few ms for the other streams' requests,
    stream C ─┘                                    then one batch per modality (and one for all their frames)

- `FairScheduler` (speech recognition): each stream has at most one pass waiting. A free worker takes the waiting
  pass of the stream that has used the least compute so far (start-time fair queuing), so a file replayed as fast
  as possible, or a stream catching up with long passes, cannot keep a live stream's short passes waiting behind
  its own.
- `ScoreBatcher` (scoring): windows and sampled frames from all streams queue to one thread, which waits at most
  `max_wait_s` for the requests of the other active streams and runs them as one batch: one `ScorerSet.score` (one
  batch per modality) over every stream's windows. Sampled frames are analysed in one call over every stream's
  frames where a batch dimension pays (`frames_together`: a GPU); on a CPU the frame models run one image at a
  time anyway, so each stream's frames run on their own, the stream that has used the least scoring time first,
  and a stream whose frames are slow delays another's by at most one of its requests. A batch that fails is run again
  request by request, so one stream's bad input fails only that stream's request.

Both answer on the caller's event loop; a request whose caller was cancelled is skipped, and `close()` fails the
waiting ones. How many threads each gets comes from models.runtime.thread_plan (the CPUs this process may use).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from models.base import MODALITIES
from models.scoring import Scorers

log = logging.getLogger(__name__)


class WorkersClosed(RuntimeError):
    """The engine was closed while a request waited."""


def _resolve(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _join(threads: list[threading.Thread], timeout_s: float = 60.0) -> None:
    """Waits for the pass or batch in progress: a worker thread still inside native code (CTranslate2, torch)
    when the interpreter exits aborts the process ("terminate called without an active exception")."""
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(timeout_s)


@dataclass
class _Request:
    key: Hashable  # the stream
    loop: asyncio.AbstractEventLoop  # the caller's
    future: asyncio.Future

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future, result, error)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
            pass


@dataclass
class _Job(_Request):
    fn: Callable[[], Any]
    seq: int = 0


def lower_thread_priority(nice: int = 10, native_id: int | None = None) -> bool:
    """Lower one thread's CPU priority (the calling thread's by default) by `nice` steps below the caller's; the
    threads it starts from then on inherit it. Linux alone gives each thread its own nice value: False elsewhere,
    or when it fails."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, native_id or 0, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except (OSError, TypeError):  # TypeError: a thread that has not started has no native id yet
        return False
    return True


def native_thread_ids() -> set[int]:
    """The kernel ids of this process's threads now, those that Python did not start too (a model runtime's own
    workers); empty where /proc is not there."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:
        return set()


class _WorkerThreads:
    """Threads that serve a queue of requests under one lock; `close()` fails the waiting requests and waits for
    the one in progress."""

    def __init__(self, workers: int, name: str):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._lock = threading.Condition()
        self._waiting: list = []
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        raise NotImplementedError

    def lower_priority(self, nice: int = 10) -> bool:
        """Run these threads `nice` steps below the calling thread's CPU priority; False where that is not possible."""
        return all(lower_thread_priority(nice, thread.native_id) for thread in self._threads)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            self._lock.notify_all()
        for request in waiting:
            request.answer(error=WorkersClosed("the engine was closed"))
        _join(self._threads)


class FairScheduler(_WorkerThreads):
    """Runs callables on `workers` threads, always the waiting one of the key (stream) that has been served least."""

    def __init__(self, workers: int = 1, name: str = "vidsent-asr"):
        self._served: dict[Hashable, float] = {}  # compute seconds per key
        self._seq = itertools.count()
        super().__init__(workers, name)

    @property
    def workers(self) -> int:
        return len(self._threads)

    def served_s(self, key: Hashable) -> float:
        with self._lock:
            return self._served.get(key, 0.0)

    async def run(self, key: Hashable, fn: Callable[..., Any], *args) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._closed:
                raise WorkersClosed("the ASR workers are closed")
            if key not in self._served:
                # a newcomer starts level with the least-served stream, not at zero: it must not take every
                # worker until it has caught up with streams that have run for an hour
                self._served[key] = min(self._served.values(), default=0.0)
            self._waiting.append(_Job(key, loop, future, (lambda: fn(*args)) if args else fn, next(self._seq)))
            self._lock.notify()
        return await future

    def forget(self, key: Hashable) -> None:
        """A stream has ended: its account is dropped (it holds the key: a stream's pipeline), with its jobs that
        nobody waits for any more (cancelled), which would only be skipped."""
        with self._lock:
            self._waiting = [job for job in self._waiting if job.key != key or not job.future.done()]
            if not any(job.key == key for job in self._waiting):
                self._served.pop(key, None)

    def _take(self) -> _Job | None:
        with self._lock:
            while not self._waiting and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            job = min(self._waiting, key=lambda j: (self._served.get(j.key, 0.0), j.seq))
            self._waiting.remove(job)
            return job

    def _work(self) -> None:
        while (job := self._take()) is not None:
            self._serve(job)
            del job  # it holds its stream (the pipeline, in its callable): not while waiting for the next one

    def _serve(self, job: _Job) -> None:
        if job.future.done():
            return
        started = time.perf_counter()
        try:
            result, error = job.fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result, error = None, exc
        with self._lock:
            if job.key in self._served:  # not forgotten while the job ran: its account would stay for good
                self._served[job.key] += time.perf_counter() - started
        job.answer(result, error)


@dataclass
class _ScoreRequest(_Request):
    window: Any = None
    has_audio: bool = True
    has_video: bool = True
    modalities: tuple[str, ...] = ()  # of a window request: the modalities to score now
    scored: dict | None = None  # of a window request: the scores an earlier request gave for the others
    images: list | None = None  # a frames request when set

    @property
    def size(self) -> int:
        return 1 if self.images is None else len(self.images)


@dataclass
class BatchStats:
    batches: int = 0
    window_batches: int = 0  # batches that held windows (the others held only frames)
    windows: int = 0
    images: int = 0
    largest: int = 0  # most requests in one batch
    multi_stream: int = 0  # batches that held more than one stream's requests
    retried: int = 0  # batches run again request by request after a failure
    busy_s: float = 0.0


class ScoreBatcher(_WorkerThreads):
    """One scoring thread for all streams: requests that arrive together are scored as one batch."""

    def __init__(self, scorers: Scorers, *, max_wait_s: float = 0.005, max_windows: int = 16, max_images: int = 32,
                 frames_together: bool = False, name: str = "vidsent-score"):
        self.scorers = scorers
        self.frames_together = frames_together
        self._served: dict[Hashable, float] = {}  # scoring seconds per stream
        self.max_wait_s, self.max_windows, self.max_images = max_wait_s, max_windows, max_images
        self._active: dict[Hashable, int] = {}  # streams that may send more requests soon (refcounted keys)
        self.stats = BatchStats()
        super().__init__(1, name)

    # -- the callers' side -------------------------------------------------------------------------------------
    def join(self, key: Hashable) -> None:
        """A stream starts: the batcher will wait a few ms for its requests when another stream's arrive."""
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1

    def leave(self, key: Hashable) -> None:
        with self._lock:
            left = self._active.get(key, 0) - 1
            if left > 0:
                self._active[key] = left
            else:
                self._active.pop(key, None)
                self._served.pop(key, None)

    async def score(self, key: Hashable, window, has_audio: bool = True, has_video: bool = True,
                    modalities: tuple[str, ...] = MODALITIES, scored: dict | None = None) -> dict:
        """The scores of one window (ScorerSet.score of a batch that may hold other streams'): of `modalities`,
        and those of `scored` (an earlier request's, for the other modalities) with them."""
        return await self._submit(key, window=window, has_audio=has_audio, has_video=has_video,
                                  modalities=tuple(modalities), scored=scored)

    async def analyze(self, key: Hashable, images: list) -> list:
        """The frame analyzer's result for each image, in order."""
        if not images:
            return []
        return await self._submit(key, images=list(images))

    async def _submit(self, key: Hashable, **request) -> Any:
        loop = asyncio.get_running_loop()
        item = _ScoreRequest(key, loop, loop.create_future(), **request)
        with self._lock:
            if self._closed:
                raise WorkersClosed("the scoring worker is closed")
            self._waiting.append(item)
            self._lock.notify()
        return await item.future

    # -- the scoring thread ------------------------------------------------------------------------------------
    def _others_expected(self) -> bool:
        """Whether an active stream has no request waiting yet (only then is a short wait worth it)."""
        waiting = {item.key for item in self._waiting}
        return any(key not in waiting for key in self._active)

    def _take_batch(self) -> list[_ScoreRequest] | None:
        with self._lock:
            while not self._waiting and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while self._others_expected() and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            return self._fair_share()

    def _fair_share(self) -> list[_ScoreRequest]:
        """The waiting requests in arrival order, round robin across streams, up to the batch limits: one stream
        with many requests waiting cannot fill a batch while another stream's request waits."""
        by_key: dict[Hashable, list[_ScoreRequest]] = {}
        for item in self._waiting:
            by_key.setdefault(item.key, []).append(item)
        batch: list[_ScoreRequest] = []
        windows = images = 0
        for round_ in itertools.zip_longest(*by_key.values()):
            for item in round_:
                if item is None:
                    continue
                if item.images is None and windows < self.max_windows:
                    windows += 1
                elif item.images is not None and (images == 0 or images + item.size <= self.max_images):
                    images += item.size
                else:
                    continue
                batch.append(item)
        for item in batch:
            self._waiting.remove(item)
        return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            self._serve(batch)
            del batch  # its requests hold their streams (their pipelines): not while waiting for the next one

    def _serve(self, batch: list[_ScoreRequest]) -> None:
        batch = [item for item in batch if not item.future.done()]
        if not batch:
            return
        started = time.perf_counter()
        windows = [item for item in batch if item.images is None]
        frames = [item for item in batch if item.images is not None]
        if windows:
            self._run(windows, self._score_windows)
        window_s = time.perf_counter() - started
        if frames and self.frames_together:
            self._run(frames, self._analyze_all)
        else:
            # each stream's frames alone, the least-served stream first, each answered as soon as it is done
            for item in sorted(frames, key=lambda item: self._served.get(item.key, 0.0)):
                item_started = time.perf_counter()
                self._run([item], self._analyze_all)
                self._charge([item], time.perf_counter() - item_started)
        if windows:
            self._charge(windows, window_s)
        self._count(batch, time.perf_counter() - started)

    def _score_windows(self, items: list[_ScoreRequest]) -> list[dict]:
        """One ScorerSet.score over the requests' windows, each with its own tracks, modalities and earlier scores."""
        return self.scorers.score([item.window for item in items], [item.has_audio for item in items],
                                  [item.has_video for item in items], [item.modalities for item in items],
                                  [item.scored or {} for item in items])

    def _charge(self, items: list[_ScoreRequest], seconds: float) -> None:
        """Scoring time on the streams' accounts, shared equally among the requests of a batch. A stream that left
        meanwhile (its last request answered, its pipeline ended) gets no account again: it would stay for good,
        and hold the key (the stream's pipeline)."""
        with self._lock:
            for item in items:
                if item.key in self._active:
                    self._served[item.key] = self._served.get(item.key, 0.0) + seconds / len(items)

    def _analyze_all(self, items: list[_ScoreRequest]) -> list[list]:
        images: list = []
        for item in items:
            assert item.images is not None  # frames requests only: _serve split them from the window requests
            images.extend(item.images)
        analyses = self.scorers.frames.analyze(images)
        if len(analyses) != len(images):
            raise RuntimeError(f"the frame analyzer returned {len(analyses)} results for {len(images)} frames")
        out, at = [], 0
        for item in items:
            out.append(list(analyses[at:at + item.size]))
            at += item.size
        return out

    def _run(self, items: list[_ScoreRequest], run_batch: Callable[[list[_ScoreRequest]], list]) -> None:
        """run_batch(items) → one result per item; on failure each item is run alone, so only its own fails."""
        try:
            results = run_batch(items)
        except Exception as exc:  # noqa: BLE001 - isolated below, or handed to the one caller
            if len(items) == 1:
                items[0].answer(error=exc)
                return
            log.warning("a batch of %d scoring requests failed (%s: %s); running them one by one",
                        len(items), type(exc).__name__, exc)
            self.stats.retried += 1
            for item in items:
                self._run([item], run_batch)
            return
        for item, result in zip(items, results):
            item.answer(result)

    def _count(self, batch: list[_ScoreRequest], busy_s: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.window_batches += any(item.images is None for item in batch)
        stats.windows += sum(1 for item in batch if item.images is None)
        stats.images += sum(item.size for item in batch if item.images is not None)
        stats.largest = max(stats.largest, len(batch))
        stats.multi_stream += len({item.key for item in batch}) > 1
        stats.busy_s += busy_s
