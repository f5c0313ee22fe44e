"""What the official SDKs see from a gateway in strict audit mode whose spool
disk fills up: an error they raise, never a 200 whose record was lost; and
answers again once the disk has room.

`tests/audit_faults.rs` (strict_mode_spool_failures_reach_both_sdks_as_errors)
starts the gateway (open, no client keys; the experiment's unit is
`x-user-id`) with its spool on a small tmpfs and runs pytest here with:

- PROMPTGATE_BASE_URL: the gateway root (no /v1)
- PROMPTGATE_SPOOL_DISK: the tmpfs the spool lives on; the tests fill it
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import openai
import pytest

BASE_URL = os.environ["PROMPTGATE_BASE_URL"].rstrip("/")
SPOOL_DISK = os.environ["PROMPTGATE_SPOOL_DISK"]
MESSAGES = [{"role": "user", "content": "hello"}]
HEADERS = {"x-user-id": "sdk-user"}


@contextmanager
def full_spool_disk() -> Iterator[None]:
    """Fills the spool's file system with a file of zeros until ENOSPC; the
    file goes when the block ends."""
    path = os.path.join(SPOOL_DISK, "sdk-filler")
    with open(path, "wb", buffering=0) as filler:
        for size in (64 << 10, 1):  # then byte by byte: not even a page's tail left
            try:
                while filler.write(bytes(size)):
                    pass
            except OSError as full:
                assert full.errno == errno.ENOSPC, full
    try:
        yield
    finally:
        os.remove(path)


def served_again(call: Callable[[], Any], refused: type[Exception]) -> Any:
    """Calls until served (the gateway probes the disk with back-off)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return call()
        except refused:
            assert time.monotonic() < deadline, "still refused 15 s after the disk had room"
            time.sleep(0.1)


@pytest.fixture
def oai() -> Iterator[openai.OpenAI]:
    # No SDK retries: each refusal reaches the test as the gateway sent it.
    client = openai.OpenAI(
        api_key="unused", base_url=f"{BASE_URL}/v1", max_retries=0, timeout=15, default_headers=HEADERS
    )
    yield client
    client.close()


@pytest.fixture
def claude() -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        api_key="unused", base_url=BASE_URL, max_retries=0, timeout=15, default_headers=HEADERS
    )
    yield client
    client.close()


def test_openai_sdk_raises_while_the_spool_disk_is_full(oai: openai.OpenAI) -> None:
    with full_spool_disk():
        # The first record on the full disk is this stream's: its head went
        # out, its record could not be written, so it ends with the error
        # chunk instead of its last bytes and the SDK raises mid-stream.
        with pytest.raises(openai.APIError) as cut:
            for _ in oai.chat.completions.create(model="greeting", messages=MESSAGES, stream=True):
                pass
        assert not isinstance(cut.value, openai.APIStatusError), cut.value
        assert cut.value.code == "audit_unavailable", cut.value.body
        # From now on the gateway knows: refused before any work.
        with pytest.raises(openai.APIStatusError) as refused:
            oai.chat.completions.create(model="greeting", messages=MESSAGES)
        assert refused.value.status_code == 503
        assert refused.value.code == "audit_unavailable", refused.value.body
    answer = served_again(
        lambda: oai.chat.completions.create(model="greeting", messages=MESSAGES), openai.APIStatusError
    )
    assert answer.choices[0].message.content


def test_anthropic_sdk_raises_while_the_spool_disk_is_full(claude: anthropic.Anthropic) -> None:
    with full_spool_disk():
        with pytest.raises(anthropic.APIStatusError) as cut:
            with claude.messages.stream(model="greeting", max_tokens=20, messages=MESSAGES) as stream:
                for _ in stream:
                    pass
        assert cut.value.status_code == 200, "the error event came after the stream's head"
        assert cut.value.body["error"]["type"] == "overloaded_error", cut.value.body
        with pytest.raises(anthropic.APIStatusError) as refused:
            claude.messages.create(model="greeting", max_tokens=20, messages=MESSAGES)
        assert refused.value.status_code == 503
        assert refused.value.body["error"]["type"] == "overloaded_error", refused.value.body
    message = served_again(
        lambda: claude.messages.create(model="greeting", max_tokens=20, messages=MESSAGES),
        anthropic.APIStatusError,
    )
    assert message.content[0].text
