"""Captured step inputs and outputs: safe to serialise, masked, redacted, truncated.

Inputs and outputs help debug a step in Jaeger and may hold personal data or secrets, so
content goes through four stages, each of which can only remove information:
1. `to_jsonable` walks the object with bounded depth and size, replaces cycles and objects
   JSON cannot hold by a marker or their `repr()`, and masks values under secret-looking keys
   and secret-looking strings (bearer tokens, API keys, Slack webhook URLs).
2. The JSON text goes through the user's redaction hook (`Redactor`), if any.
3. The text is truncated to `max_bytes` (UTF-8), with a marker saying how much was cut.
A hook that raises withholds the content entirely rather than letting unredacted text out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Redactor = Callable[[str], str]
"""A user hook: takes the JSON text of a captured value, returns the text to keep."""

MASK = "[REDACTED]"
WITHHELD = "[withheld: redaction hook failed]"
DEFAULT_MAX_BYTES = 4096
_MAX_DEPTH = 12
_MAX_ITEMS = 200  # per container; the rest is summarised
_MAX_REPR = 256

SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[-_]?key|apikey|auth(orization)?|cookie|session[-_]?id|"
    r"credential|private[-_]?key|signature|webhook",
    re.IGNORECASE,
)
SECRET_VALUE_PATTERN = re.compile(
    r"https://hooks\.slack\.com/[^\s\"']+"  # Slack incoming webhooks
    r"|xox[abposr]-[0-9A-Za-z-]{8,}"  # Slack tokens
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"  # OpenAI-style API keys
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"  # Authorization header values
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|(?i:password|passwd|secret|token|api[-_]?key)\s*[=:]\s*[^\s,;&\"']+"
    r"|(?<=://)[^\s:/@\"']+:[^\s@/\"']+(?=@)"  # user:password in a URL (DSNs)
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # bare JWTs
)
# One group per alternative above, in order: lowercase substrings at least one of which every
# match of that alternative contains. ASCII text whose lowercase holds none of them cannot
# match, so it skips SECRET_VALUE_PATTERN (about 10x cheaper; most captured strings are such).
# A test checks there is one group per alternative: add a group when adding an alternative.
SECRET_VALUE_HINTS: tuple[tuple[str, ...], ...] = (
    ("hooks.slack.com",),
    ("xox",),
    ("k-",),
    ("akia",),
    ("gh",),
    ("bearer", "basic"),
    ("-----begin",),
    ("passw", "secret", "token", "api"),
    ("://",),
    ("eyj",),
)
_SECRET_HINT = re.compile("|".join(re.escape(h) for group in SECRET_VALUE_HINTS for h in group))


@dataclass
class CaptureReport:
    """What the capture had to change, so the caller can count it."""

    unserialisable: int = 0
    truncated_bytes: int = 0
    redact_error: bool = False
    notes: list[str] = field(default_factory=list)


def mask_secrets_in_text(text: str) -> tuple[str, int]:
    """Replace secret-looking substrings; returns the text and how many were masked."""
    if text.isascii() and _SECRET_HINT.search(text.lower()) is None:
        return text, 0  # (non-ASCII text always takes the full pattern: Unicode case folding)
    return SECRET_VALUE_PATTERN.subn(MASK, text)


def valid_utf8(text: str) -> str:
    """`text` encodable as UTF-8: lone surrogates (from surrogateescape decoding) become '?'.

    One such character would make the whole /metrics exposition or a whole OTLP batch fail.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def clean_text(obj: Any, limit: int = 1024) -> str:
    """Free text for a span, event or log line: a str() that cannot raise, secrets masked,
    valid UTF-8, at most `limit` characters (masked before the cut, so no secret is half kept)."""
    try:
        text = obj if isinstance(obj, str) else str(obj)
    except Exception:  # noqa: BLE001 - __str__ of user objects may raise
        text = f"<unprintable {type(obj).__name__}>"
    if not isinstance(text, str):
        text = f"<unprintable {type(obj).__name__}>"
    text = mask_secrets_in_text(text[: limit + 8192])[0]
    return valid_utf8(text[:limit])


_KEY_CACHE_MAX = 4096  # distinct keys remembered; past it, keys are checked each time
_KEY_CACHE_LEN = 128  # longer keys are not remembered
_key_cache: dict[str, tuple[str, int, bool]] = {}


def _clean_key(key: str) -> tuple[str, int, bool]:
    """A mapping key with secrets masked, how many were, and whether its value is a secret.

    Remembered per key: keys are the payloads' schema and repeat from one execution to the next.
    """
    hit = _key_cache.get(key)
    if hit is None:
        masked, n = mask_secrets_in_text(key)
        hit = (masked, n, SECRET_KEY_PATTERN.search(masked) is not None)
        if len(key) <= _KEY_CACHE_LEN and len(_key_cache) < _KEY_CACHE_MAX:
            _key_cache[key] = hit
    return hit


def to_jsonable(obj: Any, report: CaptureReport) -> Any:
    """A JSON-safe copy of `obj` with secrets masked, cycles cut and depth bounded."""
    return _walk(obj, report, 0, set())


def _walk(obj: Any, report: CaptureReport, depth: int, seen: set[int]) -> Any:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):  # past ~4300 digits json.dumps raises (int max str digits)
        return obj if obj.bit_length() <= 4096 else f"<int of {obj.bit_length()} bits>"
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return repr(obj)  # JSON has no NaN or inf
    if isinstance(obj, str):
        return mask_secrets_in_text(obj)[0]
    if isinstance(obj, bytes | bytearray):
        return f"<{len(obj)} bytes>"
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    oid = id(obj)
    if oid in seen:
        return "<cycle>"
    if isinstance(obj, Mapping):
        seen.add(oid)
        out: dict[str, Any] = {}
        try:
            for i, (k, v) in enumerate(obj.items()):
                if i >= _MAX_ITEMS:
                    out["<more>"] = f"{len(obj) - _MAX_ITEMS} more items"
                    break
                key = k if isinstance(k, str) else _safe_repr(k)
                key, _, secret = _clean_key(key)
                if secret:
                    out[key] = MASK
                else:
                    out[key] = _walk(v, report, depth + 1, seen)
        finally:
            seen.discard(oid)
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        seen.add(oid)
        try:
            items = list(obj)
            res = [_walk(v, report, depth + 1, seen) for v in items[:_MAX_ITEMS]]
            if len(items) > _MAX_ITEMS:
                res.append(f"<{len(items) - _MAX_ITEMS} more items>")
        finally:
            seen.discard(oid)
        return res
    # Dataclasses, pydantic models and plain objects: their public fields, else repr().
    for attr in ("model_dump", "dict"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            try:
                return _walk(fn(), report, depth + 1, seen | {oid})
            except Exception:  # noqa: BLE001 - a user's method may raise anything
                break
    fields = getattr(obj, "__dict__", None)
    if isinstance(fields, dict) and fields:
        public = {k: v for k, v in fields.items() if not k.startswith("_")}
        seen.add(oid)
        try:
            return _walk(public, report, depth + 1, seen)
        finally:
            seen.discard(oid)
    report.unserialisable += 1
    return _safe_repr(obj)


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - repr() of user objects may raise
        text = f"<unrepresentable {type(obj).__name__}>"
    return mask_secrets_in_text(text[:_MAX_REPR])[0]


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, int]:
    """Cut `text` to at most `max_bytes` UTF-8 bytes; returns the text and the bytes cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text, 0
    cut = len(raw) - max_bytes
    marker = f"…[truncated {cut} bytes]"
    keep = max(0, max_bytes - len(marker.encode()))
    return raw[:keep].decode("utf-8", "ignore") + marker, cut


def capture(obj: Any, *, max_bytes: int, redact: Redactor | None) -> tuple[str, CaptureReport]:
    """The text to put on a span for `obj`, and a report of what was changed."""
    report = CaptureReport()
    if isinstance(obj, str):
        text = mask_secrets_in_text(obj)[0]
    else:
        text = json.dumps(to_jsonable(obj, report), ensure_ascii=False, separators=(",", ":"))
    if redact is not None:
        try:
            redacted = redact(text)
            if not isinstance(redacted, str):
                raise TypeError(f"redaction hook returned {type(redacted).__name__}, not str")
            text = redacted
        except Exception as exc:  # noqa: BLE001 - the user's hook may raise anything
            report.redact_error = True
            report.notes.append(f"{type(exc).__name__}: {exc}"[:200])
            return WITHHELD, report
    text, report.truncated_bytes = truncate_utf8(valid_utf8(text), max_bytes)
    return text, report
