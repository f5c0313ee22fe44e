"""A client's allow-list through both official SDKs: what it may not call is
a 403 the SDK raises as `PermissionDeniedError`, naming what was refused and
never reaching the provider; what it may call works."""

from __future__ import annotations

import anthropic
import openai
import pytest

from helpers import BASE_URL, RESTRICTED_KEY, SDK_TIMEOUT, sim_requests_with, unique


def restricted_openai() -> openai.OpenAI:
    return openai.OpenAI(api_key=RESTRICTED_KEY, base_url=f"{BASE_URL}/v1", max_retries=0, timeout=SDK_TIMEOUT)


def test_openai_allowed_model_is_served() -> None:
    with restricted_openai() as client:
        said = unique("allowed")
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": said}])
    assert answer.choices[0].message.content
    assert len(sim_requests_with(said)) == 1


@pytest.mark.parametrize(
    ("call", "refused"),
    [
        (lambda c, said: c.embeddings.create(model="gpt-embed", input=said), "the `embeddings` endpoint"),
        (
            lambda c, said: c.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": said}]),
            "the model `claude-x`",
        ),
    ],
)
def test_openai_forbidden_is_permission_denied(call, refused: str) -> None:
    said = unique("forbidden")
    with restricted_openai() as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            call(client, said)
    assert caught.value.status_code == 403
    assert caught.value.type == "permission_error"
    assert caught.value.body["message"] == f"this client is not allowed to call {refused}"
    assert caught.value.response.headers.get("x-request-id")
    assert sim_requests_with(said) == [], "a refused request must not reach the provider"


def test_anthropic_forbidden_endpoint_is_permission_denied() -> None:
    said = unique("forbidden-messages")
    with anthropic.Anthropic(api_key=RESTRICTED_KEY, base_url=BASE_URL, max_retries=0, timeout=SDK_TIMEOUT) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": said}])
    assert caught.value.status_code == 403
    body = caught.value.body
    assert body["type"] == "error"
    assert body["error"] == {
        "type": "permission_error",
        "message": "this client is not allowed to call the `messages` endpoint",
    }
    assert caught.value.request_id
    assert sim_requests_with(said) == []
