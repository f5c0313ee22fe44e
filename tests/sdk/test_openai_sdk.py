"""The official `openai` Python SDK as a caller of the gateway."""

from __future__ import annotations

import http.client
import json
import re
import time

import httpx2
import openai
import pytest

from helpers import (
    BASE_URL,
    CLIENT_KEY,
    PROVIDER_KEY,
    SDK_TIMEOUT,
    SIM_URL,
    expected_text,
    gateway_post,
    sim_request_with,
    sim_requests_with,
    unique,
)

MODEL = "gpt-4o"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_no_internals(message: str) -> None:
    """Gateway error messages never reveal provider URLs or keys."""
    sim_authority = SIM_URL.split("://", 1)[1]
    for secret in (PROVIDER_KEY, CLIENT_KEY, sim_authority, "127.0.0.1:9", "http://"):
        assert secret not in message, f"error message reveals {secret!r}: {message}"


# --- successful calls ---------------------------------------------------------


def test_chat_completion(oai: openai.OpenAI) -> None:
    said = unique("chat")
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": said},
        ],
    )
    completion = raw.parse()
    assert raw.status_code == 200
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == expected_text(MODEL, said, "Be brief.")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # The gateway's request id, also what the SDK exposes as `_request_id`.
    request_id = raw.headers.get("x-request-id")
    assert request_id and UUID_RE.match(request_id), request_id
    assert completion._request_id == request_id
    # The provider got the same id, and the body the SDK sent.
    sent = sim_request_with(said)
    assert sent.method == "POST" and sent.path == "/v1/chat/completions"
    assert sent.header("x-request-id") == request_id
    assert sent.json()["model"] == MODEL
    assert sent.json()["messages"][1] == {"role": "user", "content": said}


def test_chat_completion_stream_with_usage(oai: openai.OpenAI) -> None:
    said = unique("stream")
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": said}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_text(MODEL, said)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1, "the answer should arrive in several deltas"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    sent = sim_request_with(said)
    assert sent.json()["stream"] is True
    assert sent.json()["stream_options"] == {"include_usage": True}


def test_chat_completion_stream_matches_non_stream_usage(oai: openai.OpenAI) -> None:
    said = unique("usage")
    messages = [{"role": "user", "content": said}]
    whole = oai.chat.completions.create(model=MODEL, messages=messages)
    chunks = list(
        oai.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions(oai: openai.OpenAI) -> None:
    said = unique("legacy")
    model = "gpt-3.5-turbo-instruct"
    completion = oai.completions.create(model=model, prompt=said, max_tokens=50)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == expected_text(model, said)
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert sim_request_with(said).path == "/v1/completions"


def test_completions_stream(oai: openai.OpenAI) -> None:
    said = unique("legacy-stream")
    model = "gpt-3.5-turbo-instruct"
    chunks = list(oai.completions.create(model=model, prompt=said, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected_text(model, said)


def test_embeddings(oai: openai.OpenAI) -> None:
    said = unique("embed")
    result = oai.embeddings.create(model="gpt-embedding-test", input=said, encoding_format="float", dimensions=16)
    assert result.object == "list"
    assert len(result.data) == 1
    vector = result.data[0].embedding
    assert len(vector) == 16
    assert all(isinstance(x, float) for x in vector)
    assert any(x != 0.0 for x in vector)
    assert result.usage.prompt_tokens > 0
    sent = sim_request_with(said)
    assert sent.path == "/v1/embeddings"
    assert sent.json()["dimensions"] == 16


def test_embeddings_default_encoding(oai: openai.OpenAI) -> None:
    """The SDK asks for base64 by default; a float list must still parse."""
    said = unique("embed-default")
    result = oai.embeddings.create(model="gpt-embedding-test", input=[said])
    assert len(result.data[0].embedding) > 0


def test_responses(oai: openai.OpenAI) -> None:
    said = unique("responses")
    response = oai.responses.create(model=MODEL, input=said)
    assert response.status == "completed"
    assert response.output_text == expected_text(MODEL, said)
    assert response.usage is not None and response.usage.output_tokens > 0
    assert sim_request_with(said).path == "/v1/responses"


def test_responses_stream(oai: openai.OpenAI) -> None:
    said = unique("responses-stream")
    events = list(oai.responses.create(model=MODEL, input=said, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == expected_text(MODEL, said)
    assert events[-1].response.output_text == expected_text(MODEL, said)


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    # The SDK's helper checks every delta belongs to an announced item and part.
    said = unique("responses-helper")
    with oai.responses.stream(model=MODEL, input=said) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == expected_text(MODEL, said)
    assert final.output_text == expected_text(MODEL, said)
    assert final.usage is not None and final.usage.output_tokens > 0


def test_stream_broken_by_the_provider_midway_raises_and_is_not_retried(oai: openai.OpenAI) -> None:
    said = unique("drop-midway")
    received = []
    with pytest.raises((openai.APIError, httpx2.TransportError)):
        for chunk in oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": said}],
            stream=True,
            extra_headers={"x-sim-fault": "drop-after=3"},
        ):
            received.append(chunk)
    assert 1 <= len(received) <= 3, received
    assert len(sim_requests_with(said)) == 1, "a stream that started is never retried"


def test_models_list(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "fast" in ids
    assert "dead-model" in ids
    # Wildcard routes are not model names.
    assert not any("*" in i for i in ids), ids


def test_alias_is_rewritten_upstream(oai: openai.OpenAI) -> None:
    said = unique("alias")
    completion = oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": said}])
    sent = sim_request_with(said)
    assert sent.json()["model"] == "gpt-4o-mini"
    assert completion.choices[0].message.content == expected_text("gpt-4o-mini", said)


def test_caller_request_id_is_echoed_and_forwarded(oai: openai.OpenAI) -> None:
    request_id = unique("rid")
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "request id check"}],
        extra_headers={"x-request-id": request_id},
    )
    assert raw.headers.get("x-request-id") == request_id
    assert raw.parse()._request_id == request_id
    sent = sim_request_with(request_id)
    assert sent.header("x-request-id") == request_id


def test_unusable_caller_request_id_is_replaced(oai: openai.OpenAI) -> None:
    said = unique("bad-rid")
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": said}],
        extra_headers={"x-request-id": "x" * 300},
    )
    request_id = raw.headers.get("x-request-id")
    assert request_id and UUID_RE.match(request_id), request_id
    assert sim_request_with(said).header("x-request-id") == request_id


def test_provider_key_injected_and_client_key_withheld(oai: openai.OpenAI) -> None:
    said = unique("keys")
    oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": said}],
        extra_headers={"openai-organization": "org-caller", "x-custom-trace": "kept"},
    )
    sent = sim_request_with(said)
    assert sent.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert "x-api-key" not in sent.header_names()
    assert "openai-organization" not in sent.header_names()
    assert sent.header("x-custom-trace") == "kept"
    for name, value in sent.headers:
        assert CLIENT_KEY not in value, f"client key forwarded in {name}"


def test_stream_is_decided_by_the_body_not_the_accept_header(oai: openai.OpenAI) -> None:
    """The SDK sends `accept: application/json` even when streaming: the body decides."""
    said = unique("accept")
    with oai.chat.completions.with_streaming_response.create(
        model=MODEL, messages=[{"role": "user", "content": said}], stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = b"".join(response.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]")


# --- errors -------------------------------------------------------------------


def test_wrong_key_is_authentication_error() -> None:
    said = unique("wrong-key")
    with openai.OpenAI(api_key="pg-wrong-key", base_url=f"{BASE_URL}/v1", max_retries=0, timeout=SDK_TIMEOUT) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": said}])
        assert caught.value.status_code == 401
        assert caught.value.type == "authentication_error"
        assert caught.value.response.headers.get("x-request-id")
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert sim_requests_with(said) == [], "a refused request must not reach the provider"


def test_missing_key_is_authentication_error() -> None:
    reply = gateway_post(
        "/v1/chat/completions",
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
        {"authorization": ""},
    )
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"


def test_unknown_model_is_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert error.status_code == 404
    assert error.code == "model_not_found"
    assert error.param == "model"
    assert "no-such-model" in error.message


def test_wrong_type_is_bad_request_naming_the_field(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"model": 42}
        )
    error = caught.value
    assert error.status_code == 400
    assert error.param == "model"
    assert error.type == "invalid_request_error"
    assert "`model`" in error.message

    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"stream": "yes"}
        )
    assert caught.value.param == "stream"


def test_ill_typed_messages_and_input_are_bad_request_naming_the_path(oai: openai.OpenAI) -> None:
    marker = unique("bad")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": marker}], extra_body={"messages": "not-a-list"}
        )
    error = caught.value
    assert error.status_code == 400
    assert error.param == "messages"
    assert error.type == "invalid_request_error"
    assert 'expected an array of message objects, got string "not-a-list"' in error.message

    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": marker}, {"role": "user", "content": 7}],  # type: ignore[list-item]
        )
    assert caught.value.param == "messages[1].content"
    assert "expected a string or an array of content parts" in caught.value.message

    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": marker}], max_tokens="ten")  # type: ignore[arg-type]
    assert caught.value.param == "max_tokens"
    assert "expected a whole number ≥ 0" in caught.value.message

    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model=MODEL, input=marker, extra_body={"input": 42})
    assert caught.value.param == "input"
    assert "expected a string or an array of input items" in caught.value.message
    # None of them reached the provider.
    assert sim_requests_with(marker) == []


def test_what_openai_refuses_the_simulator_refuses_as_openai_does(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[])
    assert caught.value.code == "empty_array"
    assert caught.value.param == "messages"

    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "beep"}])  # type: ignore[list-item, misc]
    assert caught.value.code == "invalid_value"
    assert caught.value.param == "messages[0].role"
    assert "Invalid value: 'robot'. Supported values are:" in caught.value.message


def test_missing_model_is_bad_request(oai: openai.OpenAI) -> None:
    reply = gateway_post("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}]}))
    assert reply.status == 400
    assert reply.json()["error"]["param"] == "model"


def test_malformed_json_has_openai_error_shape() -> None:
    reply = gateway_post("/v1/chat/completions", '{"model": "gpt-4o", "messages": [}')
    assert reply.status == 400
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_json"
    assert "JSON" in body["error"]["message"]
    assert reply.headers.get("x-request-id")


def test_oversize_body_is_413(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 70_000}])
    assert caught.value.status_code == 413
    assert caught.value.code == "request_too_large"


def test_unreachable_provider_is_502(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(model="dead-model", messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert error.status_code == 502
    assert error.code == "provider_unreachable"
    assert_no_internals(error.message)
    assert_no_internals(error.response.text)


def test_hanging_provider_is_504(oai: openai.OpenAI) -> None:
    said = unique("hang")
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": said}], extra_headers={"x-sim-fault": "hang"}
        )
    elapsed = time.monotonic() - started
    error = caught.value
    assert error.status_code == 504
    assert error.code == "provider_timeout"
    assert_no_internals(error.message)
    # first_byte_timeout is 1 s per attempt, with 2 retries.
    assert 1.0 <= elapsed < 10.0, elapsed
    assert len(sim_requests_with(said)) == 3


def test_provider_client_error_passes_through_unchanged(oai: openai.OpenAI) -> None:
    said = unique("status-400")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": said}], extra_headers={"x-sim-fault": "status=400"}
        )
    error = caught.value
    assert error.status_code == 400
    assert error.response.json() == {
        "error": {"message": "simulated error 400", "type": "server_error", "code": None}
    }
    assert error.message.startswith("Error code: 400")
    # A 4xx is the caller's to see: no retry.
    assert len(sim_requests_with(said)) == 1


def test_provider_overload_is_retried_then_passed_through(oai: openai.OpenAI) -> None:
    said = unique("status-503")
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": said}], extra_headers={"x-sim-fault": "status=503"}
        )
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["message"] == "simulated error 503"
    # max_retries = 2 at the gateway: three attempts reached the provider.
    assert len(sim_requests_with(said)) == 3


def test_rate_limit_is_retried_then_rate_limit_error(oai: openai.OpenAI) -> None:
    said = unique("status-429")
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": said}],
            extra_headers={"x-sim-fault": "status=429;retry-after=1"},
        )
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after") == "1"
    sent = sim_requests_with(said)
    assert len(sent) == 3
    # The request id is the same on every attempt.
    assert len({r.header("x-request-id") for r in sent}) == 1


def test_connection_closed_by_provider_is_502(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        oai.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "close"}], extra_headers={"x-sim-fault": "close"}
        )
    assert caught.value.status_code == 502
    assert_no_internals(caught.value.message)


def test_unknown_endpoint_is_openai_shaped_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.post("/nothing-here", body={"model": MODEL}, cast_to=object)
    assert caught.value.status_code == 404


def test_client_connection_stays_usable_after_refusals(oai: openai.OpenAI) -> None:
    """A refused request must not break the caller's next call on the same client.

    The SDK reuses its keep-alive connection. When the gateway answers before
    reading the request body (a wrong key, an announced oversize body) it must
    either keep the connection usable or say `connection: close`, never drop it
    silently: with the SDK's retries off, the next call would fail. The race is
    narrow (the SDK checks a pooled connection before reusing it), hence rounds."""
    messages = [{"role": "user", "content": "still usable"}]
    for round_ in range(100):
        with pytest.raises(openai.AuthenticationError):
            oai.chat.completions.create(
                model=MODEL, messages=messages, extra_headers={"Authorization": "Bearer pg-wrong-key"}
            )
        try:
            oai.chat.completions.create(model=MODEL, messages=messages)
        except openai.APIConnectionError as error:
            pytest.fail(f"round {round_}: the call after a 401 failed on the reused connection: {error.__cause__!r}")
        with pytest.raises(openai.APIStatusError) as caught:
            oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 70_000}])
        assert caught.value.status_code == 413
        try:
            oai.chat.completions.create(model=MODEL, messages=messages)
        except openai.APIConnectionError as error:
            pytest.fail(f"round {round_}: the call after a 413 failed on the reused connection: {error.__cause__!r}")


@pytest.mark.parametrize(
    ("case", "headers", "body", "status"),
    [
        ("wrong key", {"authorization": "Bearer pg-wrong-key"}, json.dumps({"model": MODEL, "messages": []}), 401),
        ("oversize", {}, json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * 70_000}]}), 413),
    ],
    ids=["wrong-key", "oversize"],
)
def test_refusal_before_the_body_is_read_keeps_or_closes_the_connection_cleanly(
    case: str, headers: dict[str, str], body: str, status: int
) -> None:
    """The same property on a raw keep-alive connection, where it is not hidden
    by the SDK's pool check: after the refusal, the next request on the
    connection is served, unless the refusal said `connection: close`."""
    for trial in range(30):
        conn = http.client.HTTPConnection(BASE_URL.split("://", 1)[1], timeout=SDK_TIMEOUT)
        try:
            all_headers = {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"}
            all_headers.update(headers)
            conn.request("POST", "/v1/chat/completions", body=body.encode(), headers=all_headers)
            refusal = conn.getresponse()
            refusal.read()
            assert refusal.status == status
            if (refusal.getheader("connection") or "").lower() == "close":
                continue
            try:
                conn.request("GET", "/v1/models", headers={"authorization": f"Bearer {CLIENT_KEY}"})
                follow_up = conn.getresponse()
                follow_up.read()
            except (ConnectionError, http.client.HTTPException) as error:
                pytest.fail(
                    f"{case}, trial {trial}: the gateway dropped the keep-alive connection after its {status} "
                    f"without `connection: close`; the next request failed with {error!r}"
                )
            assert follow_up.status == 200
        finally:
            conn.close()


def test_gateway_still_serves_after_errors(oai: openai.OpenAI) -> None:
    said = unique("after")
    completion = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": said}])
    assert completion.choices[0].message.content == expected_text(MODEL, said)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": said}], stream=True)
        if c.choices
    )
    assert streamed == expected_text(MODEL, said)
