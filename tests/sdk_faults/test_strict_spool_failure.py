"""What the official SDKs see from a gateway in strict audit mode whose spool
disk is full: an error they raise (never a 200 whose record was lost), and
answers again once the disk has room.

`tests/audit_faults.rs` (strict_mode_spool_failures_reach_both_sdks_as_errors)
starts the gateway with its spool on a filled tmpfs and runs pytest here with:

- PROMPTGATE_BASE_URL: the gateway root (no /v1)
- PROMPTGATE_SPOOL_FILLER: the file that fills the spool's disk; removing it
  ends the fault
"""

from __future__ import annotations

import os
import time
import uuid

import anthropic
import openai
import pytest

BASE_URL = os.environ["PROMPTGATE_BASE_URL"].rstrip("/")
FILLER = os.environ["PROMPTGATE_SPOOL_FILLER"]
MESSAGES = [{"role": "user", "content": "hello"}]
# The gateway is open (no client keys); the experiment's unit is x-user-id.
HEADERS = {"x-user-id": "sdk-user"}


def openai_client() -> openai.OpenAI:
    # No SDK retries: each refusal reaches the test as the gateway sent it.
    return openai.OpenAI(
        api_key="unused", base_url=f"{BASE_URL}/v1", max_retries=0, timeout=15, default_headers=HEADERS
    )


def anthropic_client() -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="unused", base_url=BASE_URL, max_retries=0, timeout=15, default_headers=HEADERS
    )


def test_openai_sdk_raises_while_the_spool_is_full() -> None:
    client = openai_client()
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="greeting", messages=MESSAGES)
    assert refused.value.status_code == 503
    assert refused.value.code == "audit_unavailable", refused.value.body
    # A stream: refused before its head (503), or cut by the error event.
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="greeting", messages=MESSAGES, stream=True):
            pass


def test_anthropic_sdk_raises_while_the_spool_is_full() -> None:
    client = anthropic_client()
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(model="greeting", max_tokens=20, messages=MESSAGES)
    assert refused.value.status_code == 503
    assert refused.value.body["error"]["type"] == "overloaded_error", refused.value.body
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model="greeting", max_tokens=20, messages=MESSAGES) as stream:
            for _ in stream:
                pass


def test_both_sdks_are_served_again_once_the_disk_has_room() -> None:
    os.remove(FILLER)
    oai, claude = openai_client(), anthropic_client()
    deadline = time.monotonic() + 15
    while True:
        try:
            marker = uuid.uuid4().hex
            answer = oai.chat.completions.create(
                model="greeting", messages=[{"role": "user", "content": marker}]
            )
            break
        except openai.APIStatusError as refused:
            assert refused.status_code == 503, refused
            assert time.monotonic() < deadline, "still refused 15 s after the disk had room"
            time.sleep(0.1)
    assert answer.choices[0].message.content
    message = claude.messages.create(model="greeting", max_tokens=20, messages=MESSAGES)
    assert message.content[0].text
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in oai.chat.completions.create(model="greeting", messages=MESSAGES, stream=True)
        if chunk.choices
    )
    assert streamed
