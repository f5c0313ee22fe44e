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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import openai
import pytest

BASE_URL = os.environ["PROMPTGATE_BASE_URL"].rstrip("/")
SPOOL_DISK = os.environ["PROMPTGATE_SPOOL_DISK"]
# A record larger than a page: a full disk cannot take it in the slack of a
# page the open segment already has.
MESSAGES = [{"role": "user", "content": "hello " * 2000}]
HEADERS = {"x-user-id": "sdk-user"}


def top_up(filler: Any) -> None:
    """Writes zeros until ENOSPC, then byte by byte: not even a page's tail left."""
    for size in (64 << 10, 1):
        try:
            while filler.write(bytes(size)):
                pass
        except OSError as full:
            assert full.errno == errno.ENOSPC, full


def wait_spool_idle() -> None:
    """Waits until every record is uploaded and its segment deleted, so that
    no upload frees space on the disk while it is full (the gateway would
    take it before the filler does)."""
    deadline = time.monotonic() + 10
    while any(os.listdir(os.path.join(SPOOL_DISK, d)) for d in ("open", "sealed", "staging")):
        assert time.monotonic() < deadline, "the spool did not drain within 10 s"
        time.sleep(0.02)


@contextmanager
def full_spool_disk() -> Iterator[None]:
    """Keeps the spool's file system full for the block, as another process
    writing to the volume would: whatever the gateway frees (a cut segment)
    is taken again within milliseconds. The filler goes when the block ends."""
    wait_spool_idle()
    path = os.path.join(SPOOL_DISK, "sdk-filler")
    done = threading.Event()
    try:
        with open(path, "wb", buffering=0) as filler:
            top_up(filler)

            def keep_full() -> None:
                while not done.wait(0.005):
                    top_up(filler)

            keeper = threading.Thread(target=keep_full)
            keeper.start()
            try:
                yield
            finally:
                done.set()
                keeper.join()
    finally:
        os.remove(path)


def served_again(call: Callable[[], Any], refused: type[Exception]) -> Any:
    """Calls until served (after a fault the gateway probes the disk with
    back-off, and the uploader drains what was held)."""
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
    def call() -> Any:
        return oai.chat.completions.create(model="greeting", messages=MESSAGES)

    served_again(call, openai.APIStatusError)  # whatever an earlier test left
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
            call()
        assert refused.value.status_code == 503
        assert refused.value.code == "audit_unavailable", refused.value.body
    assert served_again(call, openai.APIStatusError).choices[0].message.content


def test_anthropic_sdk_raises_while_the_spool_disk_is_full(claude: anthropic.Anthropic) -> None:
    def call() -> Any:
        return claude.messages.create(model="greeting", max_tokens=20, messages=MESSAGES)

    served_again(call, anthropic.APIStatusError)  # whatever an earlier test left
    with full_spool_disk():
        with pytest.raises(anthropic.APIStatusError) as cut:
            with claude.messages.stream(model="greeting", max_tokens=20, messages=MESSAGES) as stream:
                for _ in stream:
                    pass
        assert cut.value.status_code == 200, "the error event came after the stream's head"
        assert cut.value.body["error"]["type"] == "overloaded_error", cut.value.body
        with pytest.raises(anthropic.APIStatusError) as refused:
            call()
        assert refused.value.status_code == 503
        assert refused.value.body["error"]["type"] == "overloaded_error", refused.value.body
    assert served_again(call, anthropic.APIStatusError).content[0].text
