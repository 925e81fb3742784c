"""The cheap pre-check in `mask_secrets_in_text` never skips text the full pattern would mask."""

from __future__ import annotations

import re._parser as sre_parse

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.content import MASK, SECRET_VALUE_HINTS, SECRET_VALUE_PATTERN, mask_secrets_in_text

SECRETS = [
    "https://hooks.slack.com/services/" "T000/B000/XXXXXXXX",
    "xo" "xb-123456789012-abcdefgh",
    "key sk-abcdefghijklmnopqrstuv",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_abcdefghijklmnopqrstuvwxyz",
    "Authorization: Bearer abcdefgh.ijkl",
    "BASIC dXNlcjpwYXNzd29yZA==",
    "-----BEGIN RSA " "PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----",
    "PassWord=hunter22",
    "API-KEY: abcdef",
    "postgres://user:pa55@db.example:5432/x",
    "eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2Q",
]


def test_one_hint_group_per_alternative() -> None:
    """Every top-level alternative of SECRET_VALUE_PATTERN has its group of hints."""
    (op, (_, branches)), *rest = sre_parse.parse(SECRET_VALUE_PATTERN.pattern)
    assert str(op) == "BRANCH" and not rest
    assert len(branches) == len(SECRET_VALUE_HINTS)


def test_each_known_secret_is_masked_as_by_the_full_pattern() -> None:
    """Known secrets of every kind take the full pattern and are masked."""
    for text in SECRETS:
        assert mask_secrets_in_text(text) == SECRET_VALUE_PATTERN.subn(MASK, text)
        assert mask_secrets_in_text(text)[1] >= 1, text


ALPHABET = st.sampled_from(list("abkxoghyeAKIJBS-_:/=.@ \n'\"0123456789") + ["://", "eyJ", "sk-", "xox", "ſ", "K"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.one_of(ALPHABET, st.sampled_from(SECRETS), st.text(max_size=8)), max_size=12).map("".join))
def test_same_result_as_the_full_pattern(text: str) -> None:
    """For any text the pre-check gives exactly what the full pattern gives."""
    assert mask_secrets_in_text(text) == SECRET_VALUE_PATTERN.subn(MASK, text)
