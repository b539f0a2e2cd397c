"""The recorder: connection readers, sequence checks, the writer, segments and rotation.

``run_collect(CollectSettings.from_config(cfg), stop=event)`` records until ``stop`` is set (or
``duration_s`` passes) and returns a :class:`CollectResult`; ``on_status`` receives a
:class:`CollectStatus` snapshot every ``status_every_s`` seconds.  The core never installs signal
handlers and never prints: the CLI does both.
"""

from mktpred.collect.backoff import Backoff
from mktpred.collect.clock import Clock, OffsetClock, SystemClock
from mktpred.collect.collector import Collector, CollectSettings, run_collect
from mktpred.collect.records import event_record, frame_record
from mktpred.collect.segments import RepairedSegment, SegmentWriter, repair_leftovers, segment_name
from mktpred.collect.sequence import SequenceChecker, Verdict
from mktpred.collect.status import CollectResult, CollectStatus, ConnectionStatus, redact_url

__all__ = [
    "Backoff",
    "Clock",
    "CollectResult",
    "CollectSettings",
    "CollectStatus",
    "Collector",
    "ConnectionStatus",
    "OffsetClock",
    "RepairedSegment",
    "SegmentWriter",
    "SequenceChecker",
    "SystemClock",
    "Verdict",
    "event_record",
    "frame_record",
    "redact_url",
    "repair_leftovers",
    "run_collect",
    "segment_name",
]
