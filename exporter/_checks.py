"""Small argument checks for `configure()`: each takes (name, value) and raises ValueError naming both.

Why: one check per keyword, composed in a table (`_config._CHECKS`), instead of one long function;
True/False never pass as numbers, and NaN or infinity never pass as seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, NoReturn, TypeGuard
from urllib.parse import urlsplit

Check = Callable[[str, Any], None]


def fail(name: str, want: str, value: object) -> NoReturn:
    raise ValueError(f"{name} must be {want}, got {value!r}")


def flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        fail(name, "True or False", value)


def text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        fail(name, "a non-empty string", value)


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float; True/False are flags, not numbers."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def int_in(low: int, high: int | None = None) -> Check:
    want = f"an int in {low}..{high}" if high is not None else f"an int >= {low}"

    def check(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            fail(name, want, value)

    return check


def seconds(*, zero_ok: bool) -> Check:
    want = "a finite number of seconds " + (">= 0" if zero_ok else "> 0")

    def check(name: str, value: object) -> None:
        if not is_number(value) or value < 0 or (value == 0 and not zero_ok):
            fail(name, want, value)

    return check


def ratio(name: str, value: object) -> None:
    if not is_number(value) or not 0 <= value <= 1:
        fail(name, "a number in [0, 1]", value)


def one_of(*choices: str) -> Check:
    def check(name: str, value: object) -> None:
        if not isinstance(value, str) or value.lower() not in choices:
            fail(name, f"one of {list(choices)} (any case)", value)

    return check


def http_url(name: str, value: object) -> None:
    want = "an http:// or https:// URL with a host, like http://localhost:4318"
    if not isinstance(value, str):
        fail(name, want, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0..65535
    except ValueError:
        fail(name, want, value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(name, want, value)


def path(name: str, value: object) -> None:
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        fail(name, "a file path", value)


def instance(cls: type, want: str) -> Check:
    def check(name: str, value: object) -> None:
        if not isinstance(value, cls):
            fail(name, want, value)

    return check


def is_callable(name: str, value: object) -> None:
    if not callable(value):
        fail(name, "a callable str -> str", value)


def optional(check: Check) -> Check:
    def check_unless_none(name: str, value: object) -> None:
        if value is not None:
            check(name, value)

    return check_unless_none
