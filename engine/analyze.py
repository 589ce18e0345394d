"""A file replayed as fast as possible through the live pipeline, collected into one result: what `vidsent analyze`
writes and what `vidsent evaluate` scores clips by."""

from __future__ import annotations

from pathlib import Path

from engine.config import PipelineConfig
from engine.engine import Engine
from engine.pipeline import StreamPipeline
from protocol import EndMessage, ErrorMessage, WindowMessage
from stream.sources import FileSource


async def analyze_file(path: str | Path, engine: Engine, config: PipelineConfig) -> dict:
    """One file replayed as fast as possible through the live pipeline: its window timeline and overall verdict
    (what `vidsent analyze` writes, and what `vidsent evaluate` scores clips by):
    {file, duration, label, score, graded, rolling, modalities, transcript, languages, people, speakers, windows,
    error?}."""
    windows: list[dict] = []
    errors: list[dict] = []

    def collect(message):
        if isinstance(message, WindowMessage):
            windows.append({k: v for k, v in message.to_json().items()
                            if k not in ("type", "v", "stream", "latency_s")})
        elif isinstance(message, ErrorMessage):
            errors.append({"code": message.code, "message": message.message})

    source = FileSource(path, realtime=False, sample_fps=config.sample_fps)
    end: EndMessage = await StreamPipeline(Path(path).name, source, engine, config, emit=collect).run()
    summary = end.summary
    result = {
        "file": str(path),
        "duration": summary["duration"],
        "label": summary["label"],
        "score": summary["score"],
        "graded": summary["graded"],
        "rolling": summary["rolling"],
        "modalities": summary["modalities"],
        "transcript": summary["transcript"],
        "languages": summary.get("languages", {}),
        "people": summary["people"],
        "speakers": summary.get("speakers", []),
        "windows": windows,
    }
    if errors:
        result["error"] = errors[0]
    return result
