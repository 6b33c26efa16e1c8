"""Typed events the library emits and a front end renders (a progress bar, or NDJSON for scripts).

Three kinds, as in ab-av1's JSON mode:

* :class:`Status` — what is happening now (a step starting, a note such as "PLACEHOLDER model");
* :class:`Progress` — ``done`` of ``total`` units (frames) of one stage;
* :class:`Result` — a command's result, the same dictionary its ``--json`` output holds.

>>> seen = []
>>> progress = progress_events(seen.append)     # a ProgressFactory: library progress -> Progress events
>>> to_json(Status("encode crf23 roi", stage="compare"))
'{"type": "status", "message": "encode crf23 roi", "stage": "compare", "level": "info"}'

The library never prints; it calls the sink. ``to_dict``/``to_json`` give the NDJSON form: one
object per event with ``type`` first, non-finite floats as ``null``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Union


@dataclass(frozen=True)
class Status:
    message: str
    stage: str = ""
    level: str = "info"  # info | note | warning
    type: ClassVar[str] = "status"


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int | None = None
    unit: str = "frame"
    final: bool = False  # the stage's last report
    type: ClassVar[str] = "progress"


@dataclass(frozen=True)
class Result:
    command: str
    result: dict[str, Any] = field(default_factory=dict)
    type: ClassVar[str] = "result"


Event = Union[Status, Progress, Result]
EventSink = Callable[[Event], None]
TYPES = ("status", "progress", "result")


def discard(_: Event) -> None:
    pass


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


def to_dict(e: Event) -> dict[str, Any]:
    return {"type": e.type, **_clean(dataclasses.asdict(e))}


def to_json(e: Event) -> str:
    return json.dumps(to_dict(e), allow_nan=False)


class ProgressEvents:
    """The library's progress protocol (``update``/``close``) turned into :class:`Progress` events,
    at most one every ``interval`` seconds, plus the first and the last."""

    def __init__(self, sink: EventSink, total: int | None, stage: str, unit: str = "frame",
                 interval: float = 0.2) -> None:
        self.sink, self.total, self.stage, self.unit, self.interval = sink, total, stage, unit, interval
        self.done = 0
        self._last: float | None = None
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval:
            self._last = now
            self.sink(Progress(self.stage, self.done, self.total, self.unit))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sink(Progress(self.stage, self.done, self.total, self.unit, final=True))


def progress_events(sink: EventSink, interval: float = 0.2) -> Callable[[int | None, str], ProgressEvents]:
    """A ProgressFactory (``factory(total, desc)``) whose bars emit :class:`Progress` events."""

    def make(total: int | None, desc: str) -> ProgressEvents:
        return ProgressEvents(sink, total, desc, interval=interval)

    return make


def notes(sink: EventSink, stage: str = "") -> Callable[[str], None]:
    """An ``on_event(str)`` callback (the encoder's notes) that emits ``Status(level="note")``."""
    return lambda message: sink(Status(message, stage=stage, level="note"))
