"""The heart: where a frame becomes a verdict. `StreamPipeline` runs one stream (engine/pipeline.py, with the speech
and frame tracks of engine/tracks.py); `Engine` holds the models, loaded once per process and shared by every
stream, and the workers that run them off the event loop (engine/workers.py); `analyze_file` replays a file
through the same pipeline."""

from engine.analyze import analyze_file
from engine.config import PipelineConfig
from engine.engine import Engine
from engine.pipeline import StreamPipeline

__all__ = ["Engine", "PipelineConfig", "StreamPipeline", "analyze_file"]
