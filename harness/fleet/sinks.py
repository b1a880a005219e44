"""Where measurement records go: the ledger, a JSONL file, a locust event forwarder - any callable.

One ``Measurement`` per operation, written as one JSON line, is the raw record of a load run (the report's
``measurements.jsonl``) and how locust workers hand their records back to the harness process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from harness.errors import InputError
from harness.records import Measurement

Sink = Callable[[Measurement], None]
#: One encoder for every line: ``json.dumps`` with custom separators would build a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

try:  # a record per message is the engine's largest cost after the socket write: orjson is 10x json here
    import orjson

    def _line(data: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # something orjson does not take (an int past 64 bits): the standard encoder
            return (_ENCODER.encode(data) + "\n").encode()

except ImportError:  # pragma: no cover - orjson is a dependency; kept working without it

    def _line(data: dict[str, Any]) -> bytes:
        return (_ENCODER.encode(data) + "\n").encode()


class Recorder:
    """Builds each record once and hands it to every sink, in order."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = list(sinks or [])

    def record(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int = 0,
        exception: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        m = Measurement(request_type, name, response_time, response_length, exception, context or {})
        for sink in self.sinks:
            sink(m)


class JsonlSink:
    """Appends one JSON line per record; ``close()`` flushes. Lines are written in completion order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = path.open("ab", buffering=1 << 20)
        self.count = 0

    def __call__(self, m: Measurement) -> None:
        if self._fh is None:
            return
        self._fh.write(_line(m.__dict__))
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_jsonl(path: Path) -> Iterator[Measurement]:
    """Records back from a JSONL file; a bad line is an error naming the file and line."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                yield Measurement(
                    data["request_type"],
                    data["name"],
                    float(data["response_time"]),
                    int(data.get("response_length", 0)),
                    data.get("exception"),
                    data.get("context") or {},
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{lineno}: not a measurement record: {exc}") from None
