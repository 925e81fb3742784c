"""Captured content: secrets masked, the redaction hook applied, values truncated, capture off."""

from __future__ import annotations

import json

import pytest

import exporter
from exporter import semconv as sc
from exporter import testing
from exporter.content import MASK


def captured(cap, step_name: str, key: str = sc.ATTR_STEP_INPUT) -> str | None:
    (step,) = [s for s in cap.spans() if s.name == step_name]
    return step.attributes.get(key)


@pytest.mark.parametrize("key", ["password", "api_key", "Authorization", "X-Api-Key", "client_secret",
                                 "access_token", "Cookie", "session_id", "private_key", "slack_webhook"])
def test_secret_looking_keys_are_masked(key):
    """Values under secret-looking keys never reach the span."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input({"user": "jane", "nested": {key: "hunter2-value"}})
        text = captured(cap, "s")
        assert "hunter2-value" not in text
        assert json.loads(text) == {"user": "jane", "nested": {key: MASK}}


@pytest.mark.parametrize(
    "secret",
    [
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "https://hooks.slack.com/services/" "T0000/B0000/XXXXXXXXXXXXXXXX",
        "sk-abcdefghijklmnopqrstuvwxyz123456",
        "xo" "xb-123456789012-abcdefghijkl",
        "AKIAABCDEFGHIJKLMNOP",
        "password=hunter2",
    ],
)
def test_secret_looking_values_inside_strings_are_masked(secret):
    """Secret-looking values are masked wherever they appear in a string."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_output({"log": f"calling with {secret} now"})
            s.record_input(f"raw text {secret} end")
        assert secret not in captured(cap, "s", sc.ATTR_STEP_OUTPUT)
        assert secret not in captured(cap, "s", sc.ATTR_STEP_INPUT)
        assert MASK in captured(cap, "s", sc.ATTR_STEP_INPUT)


def test_user_redaction_hook_is_applied():
    """The redact hook sees the JSON text and what it returns is what the span keeps."""
    with testing.capture(redact=lambda text: text.replace("jane@example.com", "<email>")) as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input({"from": "jane@example.com", "subject": "Invoice"})
        assert json.loads(captured(cap, "s")) == {"from": "<email>", "subject": "Invoice"}


def test_values_are_truncated_to_the_configured_size():
    """max_content_bytes bounds what a span keeps, in UTF-8 bytes, with a marker."""
    with testing.capture(max_content_bytes=256) as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_output("é" * 1000)
        text = captured(cap, "s", sc.ATTR_STEP_OUTPUT)
        assert len(text.encode()) <= 256
        assert text.endswith("bytes]") and "truncated" in text


def test_default_limit_is_4_kib():
    """Without configuration, content is cut at 4096 bytes."""
    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_output("y" * 5000)
        text = captured(cap, "s", sc.ATTR_STEP_OUTPUT)
        assert 4000 < len(text.encode()) <= 4096


def test_capture_can_be_turned_off():
    """capture_content=False puts no input or output on spans at all."""
    with testing.capture(capture_content=False) as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input({"a": 1})
            s.record_output("b")
        (step,) = [sp for sp in cap.spans() if sp.name == "s"]
        assert sc.ATTR_STEP_INPUT not in step.attributes
        assert sc.ATTR_STEP_OUTPUT not in step.attributes


def test_dataclass_like_objects_are_captured_by_their_fields():
    """Objects are captured by their public fields, secrets masked there too."""

    class Invoice:
        def __init__(self) -> None:
            self.number = "INV-1"
            self.token = "abc"
            self._private = "hidden"

    with testing.capture() as cap:
        with exporter.execution("a") as run, run.step("s") as s:
            s.record_input(Invoice())
        assert json.loads(captured(cap, "s")) == {"number": "INV-1", "token": MASK}
