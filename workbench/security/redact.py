"""Secrets out of log lines: token values in URLs, and anything shaped like a workbench token."""

from __future__ import annotations

import logging
import re

_IN_QUERY = re.compile(r"((?:[?&]|%3[Ff]|%26)(?:token|password|_xsrf)(?:=|%3[Dd]))[^&%\s\"']*")
"""A secret's value in a query string, plain or percent-encoded (a login page's ``next=``)."""
_TOKEN = re.compile(r"\bwb_[0-9a-f]{8}_[A-Za-z0-9_-]+")
MARK = "[redacted]"


def redact(text: str) -> str:
    """``text`` with ``?token=`` (and password, _xsrf) values and whole ``wb_…`` tokens blanked.

    >>> redact("GET /?token=wb_0123abcd_s3cr3t&theme=dark")
    'GET /?token=[redacted]&theme=dark'
    >>> redact("302 GET /login?next=%2F%3Ftoken%3Dwb_0123abcd_s3cr3t")
    '302 GET /login?next=%2F%3Ftoken%3D[redacted]'
    """
    return _TOKEN.sub(f"wb_{MARK}", _IN_QUERY.sub(rf"\1{MARK}", text))


class RedactingFilter(logging.Filter):
    """A log filter that blanks secrets from every record's message before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_handlers() -> None:
    """Put the redacting filter on every log handler there is now (call it once logging is set
    up: a handler added later is not covered)."""
    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    handlers = [h for logger in loggers for h in getattr(logger, "handlers", ())]
    if logging.lastResort is not None:  # what prints records no handler takes (tornado's)
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
