"""Live predictions (``mktpred serve``): the recorder of ``collect``, the stage-3 feature engine fed
frame by frame, the model, and an HTTP/SSE/WebSocket API (DESIGN.md "Predictions").

One concern per module: :mod:`.decode` (raw line -> engine input), :mod:`.pipeline` (features,
emission rule, prediction messages), :mod:`.model` (loading, checking, hot reload),
:mod:`.hub` (fan-out with bounded per-client queues), :mod:`.segments` (prediction JSONL
segments), :mod:`.app` / :mod:`.http` (FastAPI on uvicorn; imported lazily), :mod:`.run` (the run).
"""

from mktpred.serve.pipeline import GRACE_NS, Pipeline, PipelineStats
from mktpred.serve.run import ServeResult, ServeRun, ServeSettings, ServeStatus, run_serve

__all__ = ["GRACE_NS", "Pipeline", "PipelineStats", "ServeResult", "ServeRun", "ServeSettings", "ServeStatus",
           "run_serve"]
