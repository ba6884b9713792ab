"""Logs: one JSON object a line on stderr, or plain
text, for the app's records, its request line (app.observability) and
granian's own lines alike, all through ``logging`` and one root handler.

A JSON line holds time, level, logger, message, process, the record's
``extra`` keys at the top level, and exception (a traceback) if any.
Nothing here ever receives a token or a body; as a last guard, anything that
looks like ``Bearer <token>`` in a message or a traceback is masked.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("json", "text")
MAX_FIELD = 256  # longest client-controlled string (path, user agent) logged
_BEARER = re.compile(r"(?i)\b(bearer\s+)\S+")
# libc's write(2), called with the interpreter lock held (PyDLL, not CDLL).
_libc_write = ctypes.PyDLL(None, use_errno=True).write
_libc_write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_libc_write.restype = ctypes.c_ssize_t


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", text)


def clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_FIELD]


# A record's own attributes; any other key on it came from ``extra``.
RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The keys a call's ``extra`` put on the record."""
    return {k: v for k, v in vars(record).items()
            if k not in RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, process, the record's extra keys, exception.
    The stdlib's encoder: every line ASCII, and a lone surrogate from a
    client's bytes is escaped, not an encoding error that loses the line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": record.process,
            **extra_fields(record),
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The same content for people: ``time level logger message key=value...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record) + "".join(
            f" {k}={json.dumps(v, default=str)}" for k, v in extra_fields(record).items())
        return redact(text)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {FORMATS}, not {log_format!r}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each line to whatever ``sys.stderr`` is at the time (test
    captures swap it): one write of the whole line, no lock, and without
    letting go of the interpreter lock (a fast path:
    bench/README.md#log-writes).

    ``os.write`` lets go of the interpreter lock for the system call, and
    the request thread must then wait for the other thread to hand it back:
    a wait a request, several milliseconds under load. libc's ``write``
    called through ``ctypes.PyDLL`` keeps the lock for the microseconds the
    kernel takes to copy a line. (Should whatever reads stderr stop reading,
    the worker stops with it, as it would with ``os.write`` once every
    request thread waits on its line.) One write of a whole line needs no
    lock of our own either: the kernel keeps it whole (a pipe up to 4 KiB a
    write)."""

    def createLock(self) -> None:
        self.lock = None  # acquire() and release() do nothing

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            stream = self.stream
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # a capture, not a file
                stream.write(line)
                stream.flush()
                return
            data = line.encode(getattr(stream, "encoding", None) or "utf-8", "backslashreplace")
            while data:  # a full pipe may take part of it: write the rest
                written = _libc_write(fd, data, len(data))
                if written < 0:
                    error = ctypes.get_errno()
                    if error != errno.EINTR:
                        raise OSError(error, os.strerror(error))
                    continue
                data = data[written:]
        except Exception:
            self.handleError(record)


def configure_logging(config: dict[str, Any]) -> None:
    """Our one root handler (replacing ours from an earlier call, or the one
    granian's worker set up from ``server_log_config``), and the root level."""
    formatter = make_formatter(str(config["LOG_FORMAT"]))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(str(config["LOG_LEVEL"]).upper())


def server_log_config(config: dict[str, Any]) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` granian applies in its main process
    and in each worker: its own loggers (``_granian``; ``granian.access``,
    which it leaves silent unless asked) go to the root handler, ours."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "ours": {"()": "app.logs.make_formatter", "log_format": str(config["LOG_FORMAT"])},
        },
        "handlers": {"stderr": {"class": "app.logs.StderrHandler", "formatter": "ours"}},
        "root": {"handlers": ["stderr"], "level": str(config["LOG_LEVEL"]).upper()},
        "loggers": {
            "_granian": {"propagate": True},
            "granian.access": {"propagate": True},
        },
    }
