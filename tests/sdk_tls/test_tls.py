"""The official SDKs over HTTPS with the gateway's CA, and a client limited
to TLS 1.1 refused by the server. Driven by tests/integration/tls.rs, which
starts the gateway with [server.tls] and passes the CA file.

A folder of its own: tests/sdk/ runs against a plain-HTTP gateway."""

from __future__ import annotations

import os
import socket
import ssl
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

BASE_URL = os.environ["PROMPTGATE_TLS_URL"]  # https://localhost:PORT
CA_FILE = os.environ["PROMPTGATE_CA_FILE"]
CLIENT_KEY = os.environ["PROMPTGATE_CLIENT_KEY"]


def test_openai_sdk_over_https_with_a_custom_ca() -> None:
    # The SDK's own httpx client (httpx2 in these versions), trusting our CA.
    with openai.DefaultHttpxClient(verify=CA_FILE) as http:
        client = openai.OpenAI(
            api_key=CLIENT_KEY, base_url=f"{BASE_URL}/v1", http_client=http, max_retries=0
        )
        reply = client.chat.completions.create(
            model="demo-1", messages=[{"role": "user", "content": "hello over TLS"}]
        )
        assert reply.choices[0].message.content


def test_anthropic_sdk_over_https_with_a_custom_ca() -> None:
    with anthropic.DefaultHttpxClient(verify=CA_FILE) as http:
        client = anthropic.Anthropic(
            api_key=CLIENT_KEY, base_url=BASE_URL, http_client=http, max_retries=0
        )
        reply = client.messages.create(
            model="demo-1",
            max_tokens=32,
            messages=[{"role": "user", "content": "hello over TLS"}],
        )
        assert reply.content[0].text


def test_the_sdk_refuses_the_gateway_without_the_ca() -> None:
    """The certificate is really checked: the system roots do not know our CA."""
    with openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{BASE_URL}/v1", max_retries=0) as client:
        with pytest.raises(openai.APIConnectionError):
            client.models.list()


def _handshake(maximum: ssl.TLSVersion) -> str:
    """The negotiated version with a client allowing TLS 1.0 up to `maximum`
    (and, for old versions, the legacy ciphers OpenSSL hides by default)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(CA_FILE)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    url = urlsplit(BASE_URL)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
            return tls.version() or ""


def test_tls_1_1_is_refused_by_the_server_and_1_2_accepted() -> None:
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(ssl.TLSVersion.TLSv1_1)
    # An alert received from the server (rustls sends handshake_failure), not
    # a local refusal to try (that would be NO_PROTOCOLS_AVAILABLE).
    assert "ALERT_HANDSHAKE_FAILURE" in str(refused.value), refused.value
    assert _handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
