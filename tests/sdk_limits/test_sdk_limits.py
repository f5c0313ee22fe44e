"""The official SDKs against a gateway whose clients are limited to 60
requests a minute (`tests/integration/limits.rs` starts it and sets):

- PROMPTGATE_BASE_URL: the gateway root (no /v1)
- PROMPTGATE_METRICS_URL: its admin `/metrics`
- PROMPTGATE_OPENAI_KEY / PROMPTGATE_ANTHROPIC_KEY: one limited client each

Without retries the SDK raises `RateLimitError` on the 429; with retries it
waits what `retry-after-ms`/`retry-after` say and succeeds. What the gateway
saw is read from its metrics, not inferred from timing.
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

BASE_URL = os.environ["PROMPTGATE_BASE_URL"].rstrip("/")
METRICS_URL = os.environ["PROMPTGATE_METRICS_URL"]
BURST = 60


def refusals(client: str) -> float:
    text = urllib.request.urlopen(METRICS_URL, timeout=10).read().decode()
    pattern = (
        r'^promptgate_limit_refusals_total\{client="' + re.escape(client)
        + r'",limit="requests_per_minute"\} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def exhaust(call: Callable[[], Any], error: type[Exception]) -> tuple[int, Any]:
    """Calls until the first 429: how many were served, and the error."""
    for served in range(BURST * 3):
        try:
            call()
        except error as refused:
            return served, refused
    pytest.fail(f"no 429 after {BURST * 3} requests")


def retried_call(call: Callable[[], Any]) -> int:
    """A call with retries on, made while the window is empty: the retries it
    took. A request the limiter freed just before it is served at once, which
    empties the window again, so the next call must wait."""
    for _ in range(3):
        raw = call()
        if raw.retries_taken > 0:
            return raw.retries_taken
    pytest.fail("the SDK never had to retry")


def test_openai_sdk() -> None:
    key = os.environ["PROMPTGATE_OPENAI_KEY"]
    before = refusals("sdk-openai")
    no_retries = openai.OpenAI(api_key=key, base_url=f"{BASE_URL}/v1", max_retries=0)
    ask = lambda client: client.chat.completions.with_raw_response.create(  # noqa: E731
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    served, refused = exhaust(lambda: ask(no_retries), openai.RateLimitError)
    # The whole burst (and at most a refill or two while it ran) was served.
    assert BURST <= served <= BURST + 3
    assert refused.status_code == 429
    assert refused.code == "rate_limit_exceeded"
    assert refused.response.headers["retry-after"] == "1"
    assert 0 < int(refused.response.headers["retry-after-ms"]) <= 1000

    with_retries = openai.OpenAI(api_key=key, base_url=f"{BASE_URL}/v1", max_retries=5)
    retries = retried_call(lambda: ask(with_retries))
    # Every 429 the SDK saw, and only those, was a refusal of the gateway.
    assert refusals("sdk-openai") - before == 1 + retries


def test_anthropic_sdk() -> None:
    key = os.environ["PROMPTGATE_ANTHROPIC_KEY"]
    before = refusals("sdk-anthropic")
    no_retries = anthropic.Anthropic(api_key=key, base_url=BASE_URL, max_retries=0)
    ask = lambda client: client.messages.with_raw_response.create(  # noqa: E731
        model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    served, refused = exhaust(lambda: ask(no_retries), anthropic.RateLimitError)
    assert BURST <= served <= BURST + 3
    assert refused.status_code == 429
    assert refused.body["error"]["type"] == "rate_limit_error"
    assert refused.response.headers["retry-after"] == "1"

    with_retries = anthropic.Anthropic(api_key=key, base_url=BASE_URL, max_retries=5)
    retries = retried_call(lambda: ask(with_retries))
    assert refusals("sdk-anthropic") - before == 1 + retries
