"""Credentials out of what FluxLoop shows: URL userinfo and credential-like text in a collector's answers.

Standard library only, so the config's ``repr`` and the CLI can use it without loading the exporter.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url", "safe_reason"]

_MAX_REASON = 160
# Anything that looks like a credential in a collector's error text: key=value pairs, bearer tokens, long tokens.
_SECRETISH = re.compile(
    r"(?i)((?:api[_-]?key|token|secret|password|passwd|authorization|auth|credential)s?\"?\s*[:=]\s*\"?)[^\s\",}]+"
    r"|bearer\s+[^\s\",}]+"
    r"|\b(?:sk|pk|rk|ghp|gho|xox[abp])[-_][A-Za-z0-9_\-]{8,}"
    r"|\b[A-Za-z0-9_\-]{32,}\b"
)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for logs, reprs and CLI output."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def safe_reason(text: str) -> str:
    """A collector's answer text cut to a line, with anything credential-like masked."""
    flat = " ".join(text.split())[:_MAX_REASON * 2]
    return _SECRETISH.sub(lambda m: (m.group(1) or "") + "***", flat)[:_MAX_REASON]
