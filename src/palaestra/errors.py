"""Errors a user can act on. Anything deriving from ``UserError`` becomes one plain line and exit code 2."""

from __future__ import annotations

import logging
import re


class PalaestraError(Exception):
    """Base class of every error Palaestra raises on purpose."""


class UserError(PalaestraError):
    """Bad input from the user: config, data, arguments or artifacts. CLI exit code 2, HTTP 4xx."""


class ConfigError(UserError):
    """The config file or an override is invalid."""


class DataError(UserError, ValueError):
    """The data cannot be read or does not fit the task."""


class ArtifactError(UserError):
    """A run directory or one of its files is missing, truncated or altered."""


class OutputError(UserError):
    """An output cannot be written where the user asked (not a directory, no permission, disk full)."""



# Credentials in URLs: the password of ``scheme://user:PASSWORD@host`` and ``password=``-like query parameters.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@'\"]*:)(?P<secret>[^\s/'\"?#]+)(?P<at>@)")
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|token|secret|access_token|api_key|apikey|key)=)"
                    r"(?P<secret>[^&#\s'\"]+)", re.IGNORECASE)
MAX_MESSAGE = 2000  # characters of one error line: a message never carries megabytes of the user's input


def redact(text: str) -> str:
    """``text`` with URL passwords and secret query parameters masked, for every message and log line.

    >>> redact("cannot open postgresql://ann:s3cret@db:5432/x?sslpassword=p&password=q")
    'cannot open postgresql://ann:***@db:5432/x?sslpassword=p&password=***'
    """
    text = _USERINFO.sub(lambda m: f"{m['head']}***{m['at']}", text)
    return _QUERY.sub(lambda m: f"{m['head']}***", text)


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message as one bounded, redacted line: newlines folded, the middle cut past ``limit`` characters."""
    text = redact(" ".join(str(text).split()))
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[: limit - 200]} ... ({cut} characters cut) ... {text[-200:]}"
    return text


def redact_logs() -> None:
    """Mask credentials in every log record this process creates (any logger, any handler): the message and
    its string arguments are redacted as the record is made. Idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):  # formatters such as uvicorn's access log read the args themselves
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
