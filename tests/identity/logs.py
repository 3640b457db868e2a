"""Reading a server's access log: a line is written just after its response is sent, so a
test that has the response may look before the line is there; it waits for it (bounded)."""

from __future__ import annotations

import time

from tests.servers import Server


def access_line(server: Server, request_id: str, timeout: float = 10.0) -> str:
    """The access-log line of the request `request_id`."""
    deadline = time.monotonic() + timeout
    while True:
        for line in server.log().splitlines():
            if "glimpse.access" in line and f" {request_id} " in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no access-log line for {request_id}:\n{server.log()[-2000:]}")
        time.sleep(0.05)
