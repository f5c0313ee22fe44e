"""Fixtures for the SDK tests: SDK clients pointed at the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from helpers import BASE_URL, CLIENT_KEY, SDK_TIMEOUT


@pytest.fixture
def oai() -> Iterator[openai.OpenAI]:
    """An OpenAI client pointed at the gateway. No SDK retries: every status the
    gateway sends reaches the test as it was sent."""
    client = openai.OpenAI(
        api_key=CLIENT_KEY,
        base_url=f"{BASE_URL}/v1",
        max_retries=0,
        timeout=SDK_TIMEOUT,
    )
    yield client
    client.close()


@pytest.fixture
def claude() -> Iterator[anthropic.Anthropic]:
    """An Anthropic client pointed at the gateway, key given as `api_key=`."""
    client = anthropic.Anthropic(
        api_key=CLIENT_KEY,
        base_url=BASE_URL,
        max_retries=0,
        timeout=SDK_TIMEOUT,
    )
    yield client
    client.close()
