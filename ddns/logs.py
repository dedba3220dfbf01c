"""How ``ddns serve`` logs: text lines or JSON lines (``log.format``) at ``log.level``, set up once at start.

JSON lines are for a log collector (journald's or a container's output into
Loki, Elasticsearch, ...): one object per line with ``time`` (UTC, ISO
8601), ``level``, ``logger``, ``message``, the record's extra fields
(``log.info(..., extra={...})``) and, for an exception, ``exception`` with
the traceback. A message's newlines stay inside its JSON string, so one
record is always one line.

Secrets: no log call of the service is given a secret (not a request's
credentials, query string or body, not a key's secret, not a token), and
formatting adds nothing but the record's own fields. As a second fence, an
extra field whose name says it holds one (``secret``, ``password``,
``token``, ``authorization``, ``cookie``) is left out of the JSON.
"""
from __future__ import annotations

import datetime
import json
import logging
from typing import Callable, TextIO

from .config import Config, ConfigError

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SECRET_WORDS = ("secret", "password", "passwd", "token", "authorization", "cookie")
# The attributes every LogRecord has: anything else on a record came as an extra field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def log_settings(config: Config) -> tuple[str, int]:
    """(log.format, the level of log.level) checked; a value not in the lists refuses the configuration."""
    form, level = str(config["log.format"]).lower(), str(config["log.level"]).upper()
    if form not in FORMATS:
        raise ConfigError(f"log.format must be one of {', '.join(FORMATS)}, not {config['log.format']!r:.100}")
    if level not in LEVELS:
        raise ConfigError(f"log.level must be one of {', '.join(LEVELS)}, not {config['log.level']!r:.100}")
    return form, logging.getLevelName(level)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
                    .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name in _STANDARD or name in entry or name.startswith("_"):
                continue
            if any(word in name.lower() for word in SECRET_WORDS):
                continue
            entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure(config: Config, stream: TextIO) -> Callable[[], None]:
    """Send every log record at log.level or above to STREAM as log.format says; returns what undoes it.

    The handler goes on the root logger (libraries' records too). Undoing
    matters where several services run in one process, one after another
    (the tests): each writes to its own stream while it runs.
    """
    form, level = log_settings(config)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(previous)

    return undo
