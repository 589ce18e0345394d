"""The scorers as a Ray Serve application: scoring scaled out over the replicas of a Ray cluster, optional.

One ingest server (or several) keeps its sources, speech recognition and windows, and sends only what the scorers
read of each window to a Serve deployment; its replicas build the real scorers once (`build_scorers`) and batch the
requests of every stream and every ingest server that reach them into one `ScorerSet.score` (or one
`frames.analyze`) call. `RayScorerSet` is the ingest side's stand-in for a `ScorerSet`: the pipeline calls its
`score`, `fuse` and `frames.analyze` from its worker threads, exactly as it calls the in-process ones, and gets the
same results.

    ingest: Window ─▶ ScoringRequest(index, transcript, audio, frames, speech spans) ─▶ handle ─┐
    replica: @serve.batch: the requests' windows, each with its own tracks ─▶ one ScorerSet.score ─▶ back in order

Ray is imported only here and only when asked for (`vidsent serve --scorers auto|ray://HOST:PORT`); a single machine
needs none of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.base import MODALITIES, ModalityScore
from models.fusion import FusedScore, FusionParams, fuse
from models.scoring import FrameAnalyzer, ScorerSet, WindowParts, modalities_per_window

log = logging.getLogger(__name__)

APP_NAME = "vidsent-scorers"
RAY_PIN = "ray[serve]==2.60.0"
MAX_BATCH_SIZE = 16
BATCH_WAIT_S = 0.01
REQUEST_TIMEOUT_S = 300.0  # a replica's first request can wait for its models to load
REPO_ROOT = Path(__file__).resolve().parents[1]
# what a cluster elsewhere needs of this checkout: the code and the shipped heads, not the venv, history or tests
UPLOAD_EXCLUDES = [".venv", ".git", "out", "tests", "benchmarks", "docs", "client", "__pycache__", "*.pyc",
                   ".pytest_cache", "*.sqlite3"]


class RayScorersError(RuntimeError):
    """Ray is not installed, the cluster cannot be reached or the scorers could not be deployed: a one-line reason."""


@dataclass
class ScoringRequest:
    """What the scorers read of a window (models.scoring.WindowParts), and nothing else: small and picklable."""

    index: int
    transcript: str
    audio: np.ndarray
    frames: list[Any]
    speech_spans: list[tuple[float, float]]
    language: str | None = None
    word_probabilities: tuple[float, ...] = ()

    @classmethod
    def of(cls, window: WindowParts) -> ScoringRequest:
        return cls(window.index, window.transcript, window.audio, list(window.frames), list(window.speech_spans),
                   window.language, tuple(window.word_probabilities))


# -- the batching, without Ray (the replica's logic; unit-tested on fake scorers) ------------------------------

@dataclass
class ScoreCall:
    """One RayScorerSet.score call: its windows, each with its own tracks, the modalities to score now and the scores
    an earlier call gave for the others (each list: one entry per window)."""

    windows: list[ScoringRequest]
    has_audio: list[bool]
    has_video: list[bool]
    modalities: list[tuple[str, ...]]
    scored: list[dict[str, ModalityScore]] | None = None


def score_requests(scorers: ScorerSet, requests: Sequence[ScoreCall]) -> list[list[dict[str, ModalityScore]]]:
    """Each request's scores, in request order: the windows of all requests, each with its own (has_audio,
    has_video), modalities and earlier scores, scored by one `ScorerSet.score` call, so that windows from many
    streams share one model batch."""
    windows = [w for request in requests for w in request.windows]
    scores = iter(scorers.score(
        windows, [bool(f) for request in requests for f in request.has_audio],
        [bool(f) for request in requests for f in request.has_video],
        [m for request in requests for m in request.modalities],
        [done for request in requests for done in (request.scored or [{}] * len(request.windows))])
        if windows else [])
    return [[next(scores) for _ in request.windows] for request in requests]


def analyze_requests(frames, requests: Sequence[Sequence[np.ndarray]]) -> list[list[Any]]:
    """Each request's frame analyses, in request order: the images of all requests in one `frames.analyze` call."""
    images = [image for request in requests for image in request]
    analyses = iter(frames.analyze(images) if images else [])
    return [[next(analyses) for _ in request] for request in requests]


class ScoringReplica:
    """One replica's scorers, built once, and its settings (what an ingest server checks before reusing a running
    application, and fuses with). Both batch methods run in one thread, one batch at a time, as the in-process
    Engine runs all scoring in its one scoring thread (the face models are not thread-safe)."""

    def __init__(self, device: str = "auto", heads_dir: str | None = None, fusion: str = "weighted",
                 replicas: int = 1):
        from models.runtime import configure_runtime
        from models.scoring import build_scorers

        self.device = configure_runtime(device)
        self.scorers = build_scorers(self.device, Path(heads_dir) if heads_dir else None, fusion)
        self.asked = app_settings(device, heads_dir, fusion, replicas)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="vidsent-replica")
        # batches, requests, the largest batch (in requests), items (windows or images: a request may carry several)
        self.batches = {"score": [0, 0, 0, 0], "analyze": [0, 0, 0, 0]}
        self.window_scores = {m: 0 for m in MODALITIES}  # windows scored per modality

    def settings(self) -> dict:
        """The settings this application was deployed with, the device it resolved to and its fusion."""
        return {**self.asked, "resolved_device": self.device, "fusion_method": self.scorers.fusion,
                "fusion_params": self.scorers.fusion_params}

    def stats(self) -> dict:
        """How much batching happened on this replica: {score|analyze: {batches, requests, largest, items}}, and
        {modalities: {text|audio|visual: windows}} (a window's text and media may come in separate requests)."""
        return {**{kind: dict(zip(("batches", "requests", "largest", "items"), counts))
                   for kind, counts in self.batches.items()}, "modalities": dict(self.window_scores)}

    def count_window_scores(self, requests: Sequence[ScoreCall]) -> None:
        for request in requests:
            for window_modalities in request.modalities:
                for modality in window_modalities:
                    self.window_scores[modality] += 1

    async def in_worker(self, kind: str, fn, scorers_part, requests, items: int):
        counts = self.batches[kind]
        counts[0], counts[1], counts[2] = counts[0] + 1, counts[1] + len(requests), max(counts[2], len(requests))
        counts[3] += items
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, scorers_part, requests)


def app_settings(device: str, heads_dir: str | None, fusion: str, replicas: int) -> dict:
    return {"device": device, "heads_dir": heads_dir, "fusion": fusion, "replicas": replicas}


def scoring_deployment(serve, settings: dict):
    """The Serve deployment around a ScoringReplica (built here: `serve` is imported only when Ray is asked for)."""
    ray_actor_options: dict[str, Any] = {"num_cpus": 1}
    if settings["device"] == "cuda":
        ray_actor_options["num_gpus"] = 1

    @serve.deployment(name="ScoringDeployment", num_replicas=settings["replicas"], ray_actor_options=ray_actor_options,
                      max_ongoing_requests=4 * MAX_BATCH_SIZE, max_constructor_retry_count=1)
    class ScoringDeployment(ScoringReplica):
        @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
        async def score(self, requests: list[ScoreCall]):
            self.count_window_scores(requests)
            return await self.in_worker("score", score_requests, self.scorers, requests,
                                        sum(len(request.windows) for request in requests))

        @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
        async def analyze(self, requests: list[list[np.ndarray]]):
            return await self.in_worker("analyze", analyze_requests, self.scorers.frames, requests,
                                        sum(len(images) for images in requests))

    # serve.deployment made the class a Deployment, which has bind; mypy does not apply class decorators
    return ScoringDeployment.bind(  # type: ignore[attr-defined]  # class decorators not applied (python/mypy#3135)
        settings["device"], settings["heads_dir"], settings["fusion"], settings["replicas"])


# -- the ingest side ------------------------------------------------------------------------------------------

class RemoteFrames:
    """`frames.analyze` through the deployment."""

    def __init__(self, handle):
        self.handle = handle

    def analyze(self, images: list[np.ndarray]) -> list[Any]:
        if not images:
            return []
        try:
            return self.handle.analyze.remote([np.ascontiguousarray(im) for im in images]).result(
                timeout_s=REQUEST_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a remote failure becomes one clear error for the stream
            raise RuntimeError(f"the Ray scorers could not analyse {len(images)} frame(s): {type(exc).__name__}: "
                               f"{_first_line(exc)}") from None


class RayScorerSet:
    """A ScorerSet whose scoring runs on a Ray Serve application: same `score`, `fuse` and `frames.analyze`.
    Blocking calls, made from the pipeline's worker threads; fusion runs here with the replicas' own fusion
    method and parameters, so a window fuses exactly as it would in-process with the same heads."""

    def __init__(self, handle, settings: dict, started_ray: bool = False):
        self.handle = handle
        self.settings = settings
        self.fusion: str = settings["fusion_method"]
        self.fusion_params: FusionParams | None = settings["fusion_params"]
        self.frames: FrameAnalyzer = RemoteFrames(handle)
        self.started_ray = started_ray

    def score(self, windows: Sequence[WindowParts], has_audio: bool | Sequence[bool] = True,
              has_video: bool | Sequence[bool] = True,
              modalities: Sequence[str] | Sequence[Sequence[str]] = MODALITIES,
              scored: Sequence[dict[str, ModalityScore]] | None = None) -> list[dict[str, ModalityScore]]:
        """The scores of every window, as ScorerSet.score (one flag per track, or one per window; the modalities
        to score now, for all or per window, and the earlier scores of the others); when the cluster fails, the
        modalities asked for are missing with that reason (the stream goes on), as a failing in-process scorer's
        would be."""
        if not windows:
            return []
        n = len(windows)
        wanted = modalities_per_window(modalities, n)
        request = ScoreCall([ScoringRequest.of(w) for w in windows],
                            [bool(has_audio)] * n if isinstance(has_audio, bool) else [bool(f) for f in has_audio],
                            [bool(has_video)] * n if isinstance(has_video, bool) else [bool(f) for f in has_video],
                            wanted, list(scored) if scored else None)
        try:
            return self.handle.score.remote(request).result(timeout_s=REQUEST_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the remote scorers' failure must not end the stream
            log.error("the Ray scorers failed on window(s) %s: %s: %s", [w.index for w in windows],
                      type(exc).__name__, _first_line(exc))
            reason = f"remote scorers failed: {type(exc).__name__}"
            earlier: Sequence[dict[str, ModalityScore] | None] = scored or [None] * n
            rows = [{**(done or {}), **{m: ModalityScore.missing(reason) for m in window_modalities}}
                    for done, window_modalities in zip(earlier, wanted)]
            return [{m: row[m] for m in MODALITIES if m in row} for row in rows]

    def fuse(self, scores: dict[str, ModalityScore]) -> FusedScore:
        return fuse(scores, self.fusion, self.fusion_params)

    def close(self, shutdown_app: bool = False) -> None:
        """Disconnect from Ray. The application stays for other ingest servers unless `shutdown_app` (or this
        process started the local Ray it runs on, which ends with it)."""
        import ray
        from ray import serve

        if shutdown_app or self.started_ray:
            try:
                serve.shutdown()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("could not shut Serve down: %s", _first_line(exc))
        ray.shutdown()


def connect_ray_scorers(address: str, *, device: str = "auto", heads_dir: str | Path | None = None,
                        fusion: str = "weighted", replicas: int = 1) -> RayScorerSet:
    """The scorers as a Ray Serve application, and a client for them.

    address: "auto" joins the Ray cluster running on this machine, or starts a local one with this machine's CPUs;
    "ray://HOST:PORT" connects a Ray Client to a cluster's head (this checkout's code and heads travel with it).
    An application already running with the same settings is reused (several ingest servers share its replicas);
    other settings redeploy it. Raises RayScorersError with a one-line reason."""
    if address != "auto" and not address.startswith("ray://"):
        raise RayScorersError(f"--scorers {address!r}: expected local, auto or ray://HOST:PORT")
    if replicas < 1:
        raise RayScorersError("--scorer-replicas must be at least 1")
    try:
        import ray
        from ray import serve
    except ImportError:
        raise RayScorersError(f"--scorers {address} needs Ray Serve: pip install '{RAY_PIN}'") from None
    heads = str(Path(heads_dir).resolve()) if heads_dir else None
    wanted = app_settings(device, heads, fusion, replicas)
    started_ray = _init_ray(ray, address)
    try:
        serve.start(proxy_location="Disabled")  # no HTTP: the ingest servers call the deployment's handle
        handle = _running_app(serve, wanted)
        if handle is None:
            log.info("deploying %s on Ray (%s): %s", APP_NAME, address, wanted)
            handle = serve.run(scoring_deployment(serve, wanted), name=APP_NAME, route_prefix=None)
        settings = handle.settings.remote().result(timeout_s=REQUEST_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - a deployment failure is reported in one line, never a traceback
        if started_ray:
            ray.shutdown()
        raise RayScorersError(f"could not deploy the scorers on Ray ({address}): {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
    log.info("scoring on Ray %s: %d replica(s) of %s, device %s", address, replicas, APP_NAME,
             settings["resolved_device"])
    return RayScorerSet(handle, settings, started_ray)


def _init_ray(ray, address: str) -> bool:
    """Connects this process to Ray; True when it started a local Ray of its own (which ends with it)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address.startswith("ray://"):
        env: dict[str, Any] = {"working_dir": str(REPO_ROOT), "excludes": UPLOAD_EXCLUDES}
        try:
            with warnings.catch_warnings():  # Ray Client warns of a timeout before it raises it: one line is enough
                warnings.simplefilter("ignore")
                ray.init(address, runtime_env=env, **quiet)
        except Exception as exc:  # noqa: BLE001 - an unreachable cluster is one clear line
            raise RayScorersError(f"cannot reach the Ray cluster at {address} (is its head running with "
                                  f"--ray-client-server-port, and does this side share its auth token or "
                                  f"RAY_AUTH_MODE?): {type(exc).__name__}: {_first_line(exc)}") from None
        return False
    # on this machine the replicas import this checkout directly
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}}
    try:
        ray.init("auto", runtime_env=env, **quiet)
        return False
    except ConnectionError:
        pass  # no Ray running here: start one
    try:
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, runtime_env=env, **quiet)
    except Exception as exc:  # noqa: BLE001
        raise RayScorersError(f"cannot start a local Ray: {type(exc).__name__}: {_first_line(exc)}") from None
    return True


def _running_app(serve, wanted: dict):
    """The handle of the application already running with these settings, else None."""
    try:
        app = serve.status().applications.get(APP_NAME)
    except Exception:  # noqa: BLE001 - no Serve running on this cluster yet
        return None
    if app is None or str(app.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        return None
    handle = serve.get_app_handle(APP_NAME)
    running = handle.settings.remote().result(timeout_s=REQUEST_TIMEOUT_S)
    if {k: running.get(k) for k in wanted} == wanted:
        log.info("reusing the running %s (%s)", APP_NAME, wanted)
        return handle
    log.warning("%s runs with %s: redeploying it with %s", APP_NAME, {k: running.get(k) for k in wanted}, wanted)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
