"""Helpers for the SDK tests: the environment, raw HTTP, the simulator's record.

`tests/sdk.rs` starts the simulated provider and the gateway on loopback and
runs pytest here with:

- PROMPTGATE_BASE_URL: the gateway root (no /v1)
- PROMPTGATE_CLIENT_KEY: the key callers present to the gateway
- PROMPTGATE_PROVIDER_KEY: the key the gateway must inject toward the provider
- PROMPTGATE_RESTRICTED_KEY: the key of a client allowed only chat
  completions of `gpt-*` models
- PROMPTGATE_SIM_URL: the simulated provider; GET /_sim/requests lists every
  request it received, oldest first

All tests share one simulator, so each test tags its requests with a unique
marker (a user message text or an `x-request-id`) and looks only at those.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: these tests are started by `cargo test --test sdk`, "
            "which runs the gateway and the simulated provider and sets it"
        )
    return value


BASE_URL = _env("PROMPTGATE_BASE_URL").rstrip("/")
CLIENT_KEY = _env("PROMPTGATE_CLIENT_KEY")
PROVIDER_KEY = _env("PROMPTGATE_PROVIDER_KEY")
RESTRICTED_KEY = _env("PROMPTGATE_RESTRICTED_KEY")
SIM_URL = _env("PROMPTGATE_SIM_URL").rstrip("/")

# Generous enough for the slow fault cases (a hanging provider costs the
# gateway 3 x 1 s with its retries), small enough that a stuck call fails the
# run instead of hanging it.
SDK_TIMEOUT = 30.0


def unique(label: str = "msg") -> str:
    """A text no other test sends, to find this test's requests at the simulator."""
    return f"{label}-{uuid.uuid4().hex}"


def expected_text(model: str, said: str, system: str | None = None) -> str:
    """The simulated provider's deterministic answer text."""
    if system is not None:
        return f'Hello from the promptgate demo provider ({model}), following "{system}". You said: "{said}"'
    return f'Hello from the promptgate demo provider ({model}). You said: "{said}"'


# --- raw HTTP, for what the SDKs cannot send (malformed JSON) or hide ---------


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = SDK_TIMEOUT,
) -> RawReply:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    try:
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return RawReply(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=data,
        )
    finally:
        conn.close()


def gateway_post(path: str, body: bytes | str, headers: dict[str, str] | None = None) -> RawReply:
    """POST to the gateway with the client key and a JSON content type."""
    if isinstance(body, str):
        body = body.encode()
    all_headers = {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"}
    all_headers.update(headers or {})
    return raw_request("POST", f"{BASE_URL}{path}", body, all_headers)


# --- the simulator's record ---------------------------------------------------


@dataclass
class SimRequest:
    method: str
    path: str
    query: str | None
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        """The first value of a header (names compared case-insensitively)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


def sim_requests() -> list[SimRequest]:
    """Every request the simulated provider received, oldest first."""
    reply = raw_request("GET", f"{SIM_URL}/_sim/requests")
    assert reply.status == 200, reply.body
    return [
        SimRequest(
            method=r["method"],
            path=r["path"],
            query=r.get("query"),
            headers=[(k, v) for k, v in r["headers"]],
            body=r["body"],
        )
        for r in reply.json()
    ]


def sim_requests_with(marker: str) -> list[SimRequest]:
    """The requests whose body or headers contain `marker`."""
    return [
        r
        for r in sim_requests()
        if marker in r.body or any(marker in value for _, value in r.headers)
    ]


def sim_request_with(marker: str) -> SimRequest:
    """The single request that carried `marker`."""
    found = sim_requests_with(marker)
    assert len(found) == 1, f"expected exactly one provider request carrying {marker!r}, got {len(found)}"
    return found[0]
