"""Decides what is secret: sensitive keys (by their words) and secret-shaped values in free text.

Key rule: a key is split into lower-case words (``snake_case``, ``camelCase``, ``kebab-case``, dots, spaces) and
is sensitive when one word names a secret (``password``, ``secret``, ``token``, ``key``, ``auth``,
``authorization``, ``cookie``, ``credentials``...) or ends in one (``accesstoken``, ``dbpassword``, ``apikey``).
Counts are never secrets: ``tokens`` (plural, as in ``max_tokens``, ``input_tokens``, ``*_tokens_details``) and
``token`` next to ``count``/``limit``/``usage``... are not sensitive. ``author``, ``keyboard`` or ``monkey`` contain no secret word. ``mask_patterns`` add regular
expressions searched anywhere in the key (case-insensitive).

Text rule: bearer tokens, ``sk-`` keys, JWTs, AWS access keys, GitHub tokens, the password of a URL's userinfo
(``https://user:pw@host``, DSNs) and ``<sensitive key>=value`` / ``<sensitive key>: value`` pairs (query
parameters, ``password: ...`` in messages, reprs) are masked wherever they appear, keeping a non-secret prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

MASK: Final = "***"

#: Extra characters scanned past a cut, so a secret straddling the cut is still recognized and masked.
SCAN_MARGIN: Final = 256

#: A word that, alone or at the end of a word, names a secret.
SECRET_WORDS: Final = frozenset({
    "password", "passwd", "passphrase", "pwd", "secret", "secrets", "token", "key", "credential", "credentials",
    "authorization", "auth", "cookie", "cookies", "apikey", "bearer", "privatekey",
})
_SECRET_SUFFIXES: Final = ("password", "passwd", "secret", "token", "apikey")
#: Words that turn a ``token`` key into a count (``token_count``, ``max_token``).
COUNT_WORDS: Final = frozenset({
    "count", "counts", "usage", "limit", "limits", "num", "number", "total", "max", "min", "budget", "length",
    "len", "size", "details",
})

_WORD: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def key_words(key: str) -> list[str]:
    """``key`` split into lower-case words: ``"apiKey"`` -> ``["api", "key"]``, ``"X-API-Key"`` ->
    ``["x", "api", "key"]``."""
    return [w.lower() for w in _WORD.findall(key)]


def is_secret_key_name(key: str) -> bool:
    """The default key rule (see the module docstring)."""
    words = key_words(key)
    for word in words:
        if word in SECRET_WORDS or word.endswith(_SECRET_SUFFIXES):
            if word == "token" and COUNT_WORDS.intersection(words):
                continue  # token_count, max_token: a number
            return True
    return False


# Secret shapes in text: (markers, pattern, prefix kept). A pattern runs only when one of its markers is in the
# text (substring checks, in C), and starts with a literal or a small set so the regex engine skips ahead fast.
_SHAPES: Final = (
    (("earer", "EARER"), r"[Bb](?:earer|EARER)\s+()[A-Za-z0-9._~+/\-]{8,}=*"),
    (("asic", "ASIC"), r"[Bb](?:asic|ASIC)\s+()[A-Za-z0-9+/]{8,}=*"),
    (("sk-",), r"sk-()(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{16,}"),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), r"g(?:h[pousr]_|ithub_pat_)()[A-Za-z0-9_]{20,}"),
    (("AKIA", "ASIA"), r"A(?:KIA|SIA)()[0-9A-Z]{16}"),
    (("eyJ",), r"eyJ()[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    # URL userinfo: scheme://user:PASSWORD@host (http, postgres, redis, amqp... DSNs)
    (("://",), r"://[^\s/:@]*:()[^\s/@]+(?=@)"),
)
_SHAPE_RES: Final = tuple((markers, re.compile(pattern)) for markers, pattern in _SHAPES)

# key=value / key: value / "key": "value" pairs: found from a secret word, then checked by the key rule.
_PAIR_WORDS: Final = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "cookie", "bearer")
_PAIR: Final = re.compile(
    r"(?P<pkey>[A-Za-z0-9_.\-]+)(?P<sep>['\"]?\s*(?:=|:(?!//))\s*)"
    r"(?:(?:[Bb]earer|[Bb]asic|[Tt]oken)\s+)?(?P<pval>'[^']*'?|\"[^\"]*\"?|[^\s'\"&,;)}\]]+)")
_KEY_HEAD: Final = re.compile(r"[A-Za-z0-9_.\-]*$")
_KEY_LOOKBACK: Final = 64

# Lowered substrings at least one of which any default-sensitive key or secret-shaped text contains.
_LOWER_MARKERS: Final = (*_PAIR_WORDS, "sk-", "gh", "akia", "asia", "eyj", "basic", "://")

# A JSON object key: a complete string literal followed by a colon.
_JSON_KEY: Final = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:')
# The first string of a JSON array (a ["key", value] pair, as headers given as a list of pairs).
_JSON_PAIR_HEAD: Final = re.compile(r'\[\s*"((?:[^"\\]|\\.)*)"\s*,')
_CACHE_LIMIT: Final = 4096


def _keep_prefix(match: re.Match[str]) -> str:
    start = match.start()
    before = match.string[start - 1] if start > 0 else " "
    if match.string[start] != ":" and (before.isalnum() or before == "_"):
        return match.group(0)  # inside a longer word: not this shape
    return match.string[start:match.start(1)] + MASK


class Masker:
    """Answers "is this key sensitive?" and masks secret-shaped text; immutable once built, safe across threads.

    ``mask_function(key, value)``, when given, is called for each sensitive key and its return value is used
    instead of ``***`` (it must not return the secret itself). ``extra_patterns`` are regular expressions
    searched (case-insensitive) in keys, in addition to the default rule.
    """

    __slots__ = ("_extra_re", "_cache", "mask_function", "_extra")

    def __init__(self, extra_patterns: Iterable[str] = (),
                 mask_function: Callable[[str, Any], Any] | None = None) -> None:
        patterns = [f"(?:{p})" for p in extra_patterns]
        self._extra_re = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None
        self._cache: dict[str, bool] = {}
        self.mask_function = mask_function
        self._extra = bool(patterns)

    def is_sensitive_key(self, key: str) -> bool:
        """True when ``key`` names a secret."""
        hit = self._cache.get(key)
        if hit is None:
            hit = is_secret_key_name(key) or (self._extra_re is not None and self._extra_re.search(key) is not None)
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

    def _mask_pairs(self, text: str) -> str:
        lowered = text.lower()
        starts: set[int] = set()
        for word in _PAIR_WORDS:
            at = lowered.find(word)
            while at != -1:
                head = _KEY_HEAD.search(text, max(0, at - _KEY_LOOKBACK), at)
                starts.add(head.start() if head is not None else at)
                at = lowered.find(word, at + len(word))
        if self._extra:  # user key patterns need not contain a default secret word
            starts.update(match.start() for match in _PAIR.finditer(text))
        if not starts:
            return text
        out: list[str] = []
        done = 0
        for start in sorted(starts):
            if start < done:
                continue
            match = _PAIR.match(text, start)
            if match is None or not self.is_sensitive_key(match.group("pkey")):
                continue
            value = match.group("pval")
            quote = value[0] if value[0] in "'\"" else ""
            closed = quote if len(value) > 1 and value.endswith(quote) else ""
            out.append(text[done:match.start("pval")])
            out.append(f"{quote}{MASK}{closed}")
            done = match.end()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def mask_text(self, text: str) -> str:
        """``text`` with secret shapes replaced, prefixes kept (``Bearer ***``, ``sk-***``, ``password=***``).

        It scans all of ``text``: callers bound it first (:meth:`mask_bounded`)."""
        for markers, pattern in _SHAPE_RES:
            for marker in markers:
                if marker in text:
                    text = pattern.sub(_keep_prefix, text)
                    break
        if "=" in text or ":" in text:
            text = self._mask_pairs(text)
        return text

    def has_secret_text(self, text: str) -> bool:
        """True when ``text`` holds a secret shape."""
        return self.mask_text(text) != text

    def mask_bounded(self, text: str, limit: int) -> tuple[str, int]:
        """``text`` masked and cut to ``limit`` characters, scanning at most ``limit + SCAN_MARGIN`` of it; with
        the number of characters cut off. A secret that straddles the cut is masked before the cut."""
        if len(text) <= limit + SCAN_MARGIN:  # scanned whole
            masked = self.mask_text(text)
            return masked[:limit], max(0, len(masked) - limit)
        masked = self.mask_text(text[:limit + SCAN_MARGIN])
        # Masking may shorten the window: never keep its last SCAN_MARGIN characters, which may hold the
        # unrecognizable start of a secret cut by the window's end.
        keep = max(0, min(limit, len(masked) - SCAN_MARGIN))
        return masked[:keep], len(text) - keep

    def json_needs_masking(self, json_text: str) -> bool:
        """True when serialized JSON has a sensitive key or secret-shaped text.

        The fast path's gate, so it must be cheap: with the default rules, substring checks on the lowered
        text (in C) clear almost every payload; only a hit runs the exact key and text checks.
        """
        if not self._extra:
            lowered = json_text.lower()
            for marker in _LOWER_MARKERS:  # a plain loop: about twice as fast as any() over a generator
                if marker in lowered:
                    break
            else:
                return False
        for pattern in (_JSON_KEY, _JSON_PAIR_HEAD):
            for match in pattern.finditer(json_text):
                if self.is_sensitive_key(match.group(1)):
                    return True
        return self.has_secret_text(json_text)


DEFAULT_MASKER: Final = Masker()
