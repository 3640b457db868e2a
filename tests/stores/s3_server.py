"""Real S3 servers for the store tests: moto's standalone server in a process of its own, and the
s3api of the Swift that `scripts/swift` starts (tests/stores/swift_server.py), plus a plain boto3
client to look behind the driver's back (buckets, pending multipart uploads)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config


@dataclass
class S3Endpoint:
    """Where an S3 server answers, and with which credentials."""

    url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    name: str = "s3"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client(self, **overrides: Any) -> Any:
        """A plain boto3 client (sync), set up as the driver's: path-style, checksums only when
        required (Swift 2.30's s3api refuses the CRC32 trailers boto3 sends by default)."""
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        retries={"max_attempts": 2, "mode": "standard"})
        options = dict(endpoint_url=self.url, region_name=self.region,
                       aws_access_key_id=self.access_key,
                       aws_secret_access_key=self.secret_key, config=config)
        options.update(overrides)
        return boto3.client("s3", **options)

    def driver_options(self, bucket: str) -> dict[str, Any]:
        return dict(endpoint_url=self.url, region=self.region, access_key=self.access_key,
                    secret_key=self.secret_key, bucket=bucket, addressing_style="path")

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: a crash, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(log: Path, port: int | None = None) -> S3Endpoint:
    """Start `moto.server` on a loopback port (a free one unless given, e.g. to restart one that
    was stopped); fail with its log if it does not answer."""
    port = port or free_port()
    env = dict(os.environ)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto server did not answer on {url} within 60 s:\n"
                                   f"{log.read_text(errors='replace')[-3000:]}") from None
            time.sleep(0.1)
    return S3Endpoint(url, "testing", "testing", name="moto", process=process)


def swift_s3_endpoint(facts: dict[str, Any]) -> S3Endpoint:
    """Swift's s3api, from what `scripts/swift start` wrote in its swift.json."""
    return S3Endpoint(facts["s3_endpoint"], facts["s3_access_key"], facts["s3_secret_key"],
                      facts.get("s3_region", "us-east-1"), name="swift")


def new_bucket(endpoint: S3Endpoint) -> str:
    # lower case, no '_': s3api refuses anything else (InvalidBucketName)
    name = f"t-{uuid.uuid4().hex[:20]}"
    endpoint.client().create_bucket(Bucket=name)
    return name


def empty_and_delete_bucket(endpoint: S3Endpoint, bucket: str) -> None:
    """Remove every object and pending upload, then the bucket (so moto frees its memory)."""
    s3 = endpoint.client()
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                      UploadId=upload["UploadId"])
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)


def pending_uploads(endpoint: S3Endpoint, bucket: str) -> list[tuple[str, str]]:
    s3 = endpoint.client()
    found = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [(u["Key"], u["UploadId"]) for u in found]


def conformance_options(endpoint: S3Endpoint) -> dict[str, Any]:
    """Small parts, so that the conformance suite's larger objects go through multipart, and
    `2 * 5 MiB` of part buffers stay within its memory bound."""
    return dict(multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024,
                parts_in_flight=2, max_parts=1000 if endpoint.name == "swift" else 10_000)
