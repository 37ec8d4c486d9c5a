"""Decides what is secret: sensitive keys (at any depth) and token-like values in free text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

MASK: Final = "***"

#: Keys matching any of these (case-insensitive, anywhere in the key) have their values replaced by ``***``.
DEFAULT_KEY_PATTERNS: Final = ("token", "password", "secret", "key", "auth", "credential")

#: Token-like values masked wherever they appear in text, keeping a short non-secret prefix.
_TEXT_SECRETS: Final = re.compile(
    r"(?P<bearer>\b[Bb]earer\s+)[A-Za-z0-9._~+/\-]{8,}=*"
    r"|(?P<sk>\bsk-)(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{16,}"
    r"|(?P<gh>\bgh[pousr]_)[A-Za-z0-9]{20,}"
    r"|(?P<aws>\bAKIA)[0-9A-Z]{16}"
    r"|(?P<jwt>\beyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
)

# Every _TEXT_SECRETS match contains one of these (the bearer rule: "earer" in either case).
_TEXT_MARKERS: Final = ("earer", "EARER", "sk-", "gh", "AKIA", "eyJ")

# Lowered substrings at least one of which any default-sensitive key or token-like text contains.
_LOWER_MARKERS: Final = (*DEFAULT_KEY_PATTERNS, "earer", "sk-", "gh", "akia", "eyj")

# A JSON object key: a complete string literal followed by a colon.
_JSON_KEY: Final = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')
_CACHE_LIMIT: Final = 4096


def _keep_prefix(match: re.Match[str]) -> str:
    return (match.group("bearer") or match.group("sk") or match.group("gh") or match.group("aws")
            or match.group("jwt") or "") + MASK


class Masker:
    """Answers "is this key sensitive?" and masks token-like text; immutable once built, safe across threads.

    ``mask_function(key, value)``, when given, is called for each sensitive key and its return value is used
    instead of ``***`` (it must not return the secret itself).
    """

    __slots__ = ("_key_re", "_cache", "mask_function", "_extra")

    def __init__(self, extra_patterns: Iterable[str] = (),
                 mask_function: Callable[[str, Any], Any] | None = None) -> None:
        patterns = [re.escape(p) for p in DEFAULT_KEY_PATTERNS] + [f"(?:{p})" for p in extra_patterns]
        self._key_re = re.compile("|".join(patterns), re.IGNORECASE)
        self._cache: dict[str, bool] = {}
        self.mask_function = mask_function
        self._extra = bool(extra_patterns)

    def is_sensitive_key(self, key: str) -> bool:
        """True when ``key`` names a secret."""
        hit = self._cache.get(key)
        if hit is None:
            hit = self._key_re.search(key) is not None
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[key] = hit
        return hit

    def masked_value(self, key: str, value: Any) -> Any:
        """What a sensitive ``key``'s value becomes."""
        if self.mask_function is not None:
            try:
                return self.mask_function(key, value)
            except Exception:  # a broken callback must not leak the value
                return MASK
        return MASK

    @staticmethod
    def mask_text(text: str) -> str:
        """``text`` with bearer tokens, API keys and JWTs replaced, prefixes kept (``Bearer ***``, ``sk-***``)."""
        if not any(marker in text for marker in _TEXT_MARKERS):
            return text
        return _TEXT_SECRETS.sub(_keep_prefix, text)

    @staticmethod
    def has_secret_text(text: str) -> bool:
        """True when ``text`` holds a token-like value. Substring checks (fast, in C) rule most text out before
        the regular expression runs."""
        for marker in _TEXT_MARKERS:
            if marker in text:
                return _TEXT_SECRETS.search(text) is not None
        return False

    def json_needs_masking(self, json_text: str) -> bool:
        """True when serialized JSON has a sensitive key or token-like text.

        The fast path's gate, so it must be cheap: with the default patterns, substring checks on the lowered
        text (in C) clear almost every payload; only a hit runs the exact key and text checks.
        """
        if not self._extra:
            lowered = json_text.lower()
            for marker in _LOWER_MARKERS:  # a plain loop: about twice as fast as any() over a generator
                if marker in lowered:
                    break
            else:
                return False
        if self.has_secret_text(json_text):
            return True
        for match in _JSON_KEY.finditer(json_text):
            if self.is_sensitive_key(match.group(1)):
                return True
        return False


DEFAULT_MASKER: Final = Masker()
