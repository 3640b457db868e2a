"""What the server itself says about an error, to check that a client passes it on."""

from __future__ import annotations

from typing import Any

import httpx


def server_message(api: httpx.Client, method: str, path: str, expect: int, **kwargs: Any) -> str:
    """Send the request over plain HTTP (asking for JSON) and return the error's message."""
    resp = api.request(method, path, **kwargs)
    assert resp.status_code == expect, (resp.status_code, resp.text)
    message = resp.json()["message"]
    assert isinstance(message, str)
    assert message
    return message
