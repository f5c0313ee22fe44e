"""Keys at the provider boundary, checked over everything the provider saw.

Runs after the other SDK test files (pytest orders files by name), so the
simulator's record then holds every request of the whole run; it also makes
its own requests so it proves something when run alone.
"""

from __future__ import annotations

import anthropic
import openai

from helpers import BASE_URL, CLIENT_KEY, PROVIDER_KEY, SDK_TIMEOUT, sim_request_with, sim_requests, unique


def test_provider_keys_injected_and_client_key_never_forwarded() -> None:
    said_openai = unique("secret-openai")
    said_bearer = unique("secret-anthropic-bearer")
    said_x_api_key = unique("secret-anthropic-x-api-key")
    with openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{BASE_URL}/v1", max_retries=0, timeout=SDK_TIMEOUT) as oai:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": said_openai}])
    with anthropic.Anthropic(auth_token=CLIENT_KEY, base_url=BASE_URL, max_retries=0, timeout=SDK_TIMEOUT) as claude:
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": said_bearer}])
    with anthropic.Anthropic(
        api_key=CLIENT_KEY,
        base_url=BASE_URL,
        max_retries=0,
        timeout=SDK_TIMEOUT,
        default_headers={"x-api-key": CLIENT_KEY, "Authorization": anthropic.omit},
    ) as claude:
        claude.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": said_x_api_key}])

    assert sim_request_with(said_openai).header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert sim_request_with(said_bearer).header("x-api-key") == PROVIDER_KEY
    assert sim_request_with(said_x_api_key).header("x-api-key") == PROVIDER_KEY

    everything = sim_requests()
    assert len(everything) >= 3
    for request in everything:
        for name, value in request.headers:
            assert CLIENT_KEY not in value, f"client key reached the provider in `{name}` of {request.path}"
        assert CLIENT_KEY not in request.body, f"client key reached the provider in the body of {request.path}"
        # Whatever credential header the provider got is the provider key.
        if request.header("authorization") is not None:
            assert request.header("authorization") == f"Bearer {PROVIDER_KEY}"
        if request.header("x-api-key") is not None:
            assert request.header("x-api-key") == PROVIDER_KEY
