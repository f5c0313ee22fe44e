"""The official `anthropic` Python SDK as a caller of the gateway."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION

from helpers import (
    BASE_URL,
    CLIENT_KEY,
    PROVIDER_KEY,
    SDK_TIMEOUT,
    expected_text,
    gateway_post,
    sim_request_with,
    sim_requests_with,
    unique,
)

MODEL = "claude-sim-model"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- successful calls ---------------------------------------------------------


def test_messages_create(claude: anthropic.Anthropic) -> None:
    said = unique("msg")
    raw = claude.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, system="Be brief.", messages=user(said)
    )
    message = raw.parse()
    assert raw.status_code == 200
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == expected_text(MODEL, said, "Be brief.")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    # Anthropic SDKs read `request-id`; the gateway sets it to its own id.
    request_id = raw.headers.get("request-id")
    assert request_id
    assert raw.headers.get("x-request-id") == request_id
    assert message._request_id == request_id
    sent = sim_request_with(said)
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert sent.header("x-request-id") == request_id
    assert sent.json()["system"] == "Be brief."
    assert sent.json()["max_tokens"] == 100


def test_messages_stream_helper(claude: anthropic.Anthropic) -> None:
    said = unique("stream")
    with claude.messages.stream(model=MODEL, max_tokens=100, messages=user(said)) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "the answer should arrive in several deltas"
    assert "".join(pieces) == expected_text(MODEL, said)
    assert final.content[0].text == expected_text(MODEL, said)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 1  # cumulative from message_delta, not message_start's 1
    assert sim_request_with(said).json()["stream"] is True


def test_messages_create_stream_events(claude: anthropic.Anthropic) -> None:
    said = unique("events")
    events = list(claude.messages.create(model=MODEL, max_tokens=100, messages=user(said), stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    for expected in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta"):
        assert expected in types, types
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == expected_text(MODEL, said)
    message_delta = next(e for e in events if e.type == "message_delta")
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.usage.output_tokens > 0


def test_stream_and_json_agree_on_usage(claude: anthropic.Anthropic) -> None:
    said = unique("usage")
    whole = claude.messages.create(model=MODEL, max_tokens=100, messages=user(said))
    with claude.messages.stream(model=MODEL, max_tokens=100, messages=user(said)) as stream:
        streamed = stream.get_final_message()
    assert streamed.usage.input_tokens == whole.usage.input_tokens
    assert streamed.usage.output_tokens == whole.usage.output_tokens


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    said = unique("count")
    counted = claude.messages.count_tokens(model=MODEL, system="Be brief.", messages=user(said))
    assert counted.input_tokens > 0
    sent = sim_request_with(said)
    assert sent.path == "/v1/messages/count_tokens"
    message = claude.messages.create(model=MODEL, max_tokens=10, system="Be brief.", messages=user(said))
    assert counted.input_tokens == message.usage.input_tokens


def test_anthropic_headers_reach_the_provider(claude: anthropic.Anthropic) -> None:
    said = unique("version")
    claude.messages.create(
        model=MODEL,
        max_tokens=10,
        messages=user(said),
        extra_headers={"anthropic-beta": "test-feature-2025-01-01"},
    )
    sent = sim_request_with(said)
    assert sent.header("anthropic-version") == ANTHROPIC_API_VERSION
    assert sent.header("anthropic-beta") == "test-feature-2025-01-01"


def test_provider_key_injected_as_x_api_key(claude: anthropic.Anthropic) -> None:
    said = unique("keys")
    claude.messages.create(model=MODEL, max_tokens=10, messages=user(said))
    sent = sim_request_with(said)
    assert sent.header("x-api-key") == PROVIDER_KEY
    assert "authorization" not in sent.header_names()
    for name, value in sent.headers:
        assert CLIENT_KEY not in value, f"client key forwarded in {name}"


def test_key_as_x_api_key_header() -> None:
    """Older SDKs and curl examples send `x-api-key` only."""
    seen: list[httpx2.Request] = []
    with anthropic.Anthropic(
        api_key=CLIENT_KEY,
        base_url=BASE_URL,
        max_retries=0,
        timeout=SDK_TIMEOUT,
        default_headers={"x-api-key": CLIENT_KEY, "Authorization": anthropic.omit},
        http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [seen.append]}),
    ) as client:
        said = unique("x-api-key")
        message = client.messages.create(model=MODEL, max_tokens=10, messages=user(said))
    assert message.content[0].text == expected_text(MODEL, said)
    assert seen[-1].headers.get("x-api-key") == CLIENT_KEY
    assert "authorization" not in seen[-1].headers
    assert sim_request_with(said).header("x-api-key") == PROVIDER_KEY


def test_key_as_bearer_auth_token() -> None:
    seen: list[httpx2.Request] = []
    with anthropic.Anthropic(
        auth_token=CLIENT_KEY,
        base_url=BASE_URL,
        max_retries=0,
        timeout=SDK_TIMEOUT,
        http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [seen.append]}),
    ) as client:
        said = unique("bearer")
        message = client.messages.create(model=MODEL, max_tokens=10, messages=user(said))
    assert message.content[0].text == expected_text(MODEL, said)
    assert seen[-1].headers.get("authorization") == f"Bearer {CLIENT_KEY}"
    assert "x-api-key" not in seen[-1].headers
    assert sim_request_with(said).header("x-api-key") == PROVIDER_KEY


# --- errors -------------------------------------------------------------------


def test_wrong_key_is_authentication_error() -> None:
    said = unique("wrong-key")
    with anthropic.Anthropic(api_key="pg-wrong-key", base_url=BASE_URL, max_retries=0, timeout=SDK_TIMEOUT) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model=MODEL, max_tokens=10, messages=user(said))
    assert caught.value.status_code == 401
    body = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]
    assert caught.value.request_id
    assert sim_requests_with(said) == []


def test_unknown_model_is_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=user("hi"))
    error = caught.value
    assert error.status_code == 404
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in error.body["error"]["message"]


def test_wrong_type_is_bad_request(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=MODEL, max_tokens=10, messages=user("hi"), extra_body={"model": 42})
    assert caught.value.status_code == 400
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "`model`" in caught.value.body["error"]["message"]


def test_ill_typed_messages_are_bad_request_naming_the_path(claude: anthropic.Anthropic) -> None:
    marker = unique("bad")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=MODEL, max_tokens=10, messages=user(marker), extra_body={"messages": "not-a-list"}
        )
    assert caught.value.status_code == 400
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("invalid value for `messages`: expected an array of message objects")

    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}],  # type: ignore[list-item, typeddict-item]
        )
    assert "`messages[0].content[0].text`" in caught.value.body["error"]["message"]
    assert sim_requests_with(marker) == []


def test_what_anthropic_refuses_the_simulator_refuses_as_anthropic_does(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "robot", "content": "beep"}])  # type: ignore[list-item, typeddict-item]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "messages.0.role: Input should be 'user' or 'assistant'"},
    }
    # The SDK insists on max_tokens; a raw caller can leave it out, and is told
    # what Anthropic would tell it.
    reply = gateway_post("/v1/messages", json.dumps({"model": MODEL, "messages": user("hi")}))
    assert reply.status == 400
    assert reply.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_bad_request_has_anthropic_error_shape() -> None:
    reply = gateway_post(
        "/v1/messages",
        json.dumps({"model": 42, "max_tokens": 10, "messages": user("hi")}),
        {"anthropic-version": "2023-06-01"},
    )
    assert reply.status == 400
    body = reply.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == "invalid_request_error"
    assert "model" in body["error"]["message"]
    assert reply.headers.get("request-id")

    reply = gateway_post("/v1/messages", '{"model": "claude-x", "messages": [')
    assert reply.status == 400
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_oversize_body_is_413(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model=MODEL, max_tokens=10, messages=user("x" * 70_000))
    assert caught.value.status_code == 413
    assert caught.value.body["error"]["type"] == "request_too_large"


def test_provider_error_passes_through_without_retry(claude: anthropic.Anthropic) -> None:
    said = unique("overloaded")
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude.messages.create(
            model=MODEL, max_tokens=10, messages=user(said), extra_headers={"x-sim-fault": "status=529"}
        )
    assert caught.value.status_code == 529
    assert caught.value.response.json()["error"]["message"] == "simulated error 529"
    # The Anthropic provider is configured with max_retries = 0.
    assert len(sim_requests_with(said)) == 1


def test_still_serves_after_errors(claude: anthropic.Anthropic) -> None:
    said = unique("after")
    message = claude.messages.create(model=MODEL, max_tokens=10, messages=user(said))
    assert message.content[0].text == expected_text(MODEL, said)
