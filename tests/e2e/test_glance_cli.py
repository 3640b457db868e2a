"""End to end: the `glance` command-line client (python-glanceclient's shell) as a subprocess.

Every run uses `--os-image-url <server> --os-auth-token x` (so no Keystone: the CLI builds a plain
HTTP client, GETs `/versions`, then caches `/v2/schemas/image` under `$HOME/.glanceclient`), with
HOME pointing at a per-test folder and no `OS_*` variables inherited.

The CLI has no machine-readable output format; it prints prettytables. The parsers below read the
`| a | b |` rows only, and join wrapped continuation rows (prettytable wraps values at 80
characters, e.g. the 128-hex-digit os_hash_value) back onto their property.

Setup and cross-checks that are not the point of a test go through the glanceclient Python API,
in-process, to keep the suite fast (each CLI run costs about a second of interpreter start-up).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import glanceclient
import pytest

from tests.servers import Server

GLANCE = Path(sys.executable).with_name("glance")
MIB = 1024 * 1024
TIMEOUT = 60.0


def _uid() -> str:
    return uuid.uuid4().hex[:12]


# --- output parsing -------------------------------------------------------------------------


def table_rows(text: str) -> list[list[str]]:
    """The cells of every `| ... |` row of a prettytable, header row included."""
    rows = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            rows.append([cell.strip() for cell in line[1:-1].split("|")])
    return rows


def property_table(text: str) -> dict[str, str]:
    """`glance image-show`-style output (Property | Value) as a dict."""
    rows = table_rows(text)
    assert rows, f"no table in output:\n{text}"
    assert rows[0] == ["Property", "Value"], rows[0]
    result: dict[str, str] = {}
    last = None
    for key, value in rows[1:]:
        if key:
            result[key] = value
            last = key
        else:  # a wrapped value continues on the next row with an empty key cell
            assert last is not None
            result[last] += value
    return result


def list_table(text: str) -> list[dict[str, str]]:
    """`glance image-list`-style output as one dict per row, keyed by the header."""
    rows = table_rows(text)
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    return [dict(zip(header, row, strict=True)) for row in body]


# --- running the CLI ------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class GlanceCli:
    server: Server
    home: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["HOME"] = str(self.home)
        return env

    def argv(self, *args: str) -> list[str]:
        return [str(GLANCE), "--os-image-url", self.server.url, "--os-auth-token", "x", *args]

    def run(self, *args: str, ok: bool = True) -> Result:
        proc = subprocess.run(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if ok:
            assert proc.returncode == 0, f"glance {args} failed:\n{proc.stdout}\n{proc.stderr}"
        return result

    def run_binary(self, *args: str) -> tuple[int, bytes, str]:
        proc = subprocess.run(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=TIMEOUT, check=False)
        return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")

    def run_tty(self, *args: str) -> Result:
        """Run with stdout on a pseudo-terminal: glanceclient draws progress bars only on a tty."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(self.argv(*args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        out = bytearray()
        deadline = time.monotonic() + TIMEOUT
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not data:
                    break
                out += data
        finally:
            os.close(master)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        returncode = proc.wait(TIMEOUT)
        return Result(returncode, out.decode(errors="replace"), stderr)


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> GlanceCli:
    home = tmp_path / "home"
    home.mkdir()
    return GlanceCli(server, home)


@pytest.fixture
def gc(server: Server) -> Any:
    return glanceclient.Client("2", endpoint=server.url, token="anything")


def _api_create(gc: Any, data: bytes | None = None, **fields: Any) -> Any:
    fields.setdefault("name", f"cli-{_uid()}")
    fields.setdefault("disk_format", "raw")
    fields.setdefault("container_format", "bare")
    image = gc.images.create(**fields)
    if data is not None:
        gc.images.upload(image.id, io.BytesIO(data))
    return gc.images.get(image.id)


# --- tests ----------------------------------------------------------------------------------


def test_image_create_with_file_and_progress(cli: GlanceCli, gc: Any, tmp_path: Path) -> None:
    """`image-create --file --progress` creates, uploads (showing a bar) and prints the result.

    Where the bar goes: glanceclient's progressbar writes to *stdout*, and only when stdout is
    a tty (GC `glanceclient/common/progressbar.py`), so the run uses a pseudo-terminal.
    """
    data = os.urandom(3 * MIB + 321)
    path = tmp_path / "upload.raw"
    path.write_bytes(data)
    name = f"cli-create-{_uid()}"

    result = cli.run_tty("image-create", "--name", name, "--disk-format", "raw",
                         "--container-format", "bare", "--min-ram", "256",
                         "--property", "glimpse_e2e_origin=cli", "--file", str(path),
                         "--progress", "--tags", "alpha", "beta")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    # progress bar: carriage-return redraws ending at 100%
    assert "\r[" in result.stdout
    assert "100%" in result.stdout
    assert "=>" in result.stdout

    shown = property_table(result.stdout)
    assert shown["name"] == name
    assert shown["status"] == "active"
    assert shown["size"] == str(len(data))
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["glimpse_e2e_origin"] == "cli"
    assert shown["min_ram"] == "256"
    assert sorted(json.loads(shown["tags"])) == ["alpha", "beta"]

    image = gc.images.get(shown["id"])
    assert image.status == "active"
    assert image.size == len(data)
    # the CLI cached the image schema where it always does
    assert (cli.home / ".glanceclient" / "image_schema.json").is_file()


def test_image_create_without_tty_prints_table(cli: GlanceCli, tmp_path: Path) -> None:
    data = os.urandom(MIB + 5)
    path = tmp_path / "upload.raw"
    path.write_bytes(data)
    result = cli.run("image-create", "--name", f"cli-plain-{_uid()}", "--disk-format", "raw",
                     "--container-format", "bare", "--visibility", "private",
                     "--file", str(path), "--progress")
    assert "\r[" not in result.stdout  # no tty, no bar
    shown = property_table(result.stdout)
    assert shown["status"] == "active"
    assert shown["disk_format"] == "raw"
    assert shown["visibility"] == "private"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_image_show(cli: GlanceCli, gc: Any) -> None:
    data = os.urandom(100_000)
    image = _api_create(gc, data, os_distro="cirros", glimpse_e2e_k="v", tags=["shown"])
    shown = property_table(cli.run("image-show", image.id).stdout)
    assert shown["id"] == image.id
    assert shown["name"] == image.name
    assert shown["status"] == "active"
    assert shown["size"] == str(len(data))
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["os_distro"] == "cirros"
    assert shown["glimpse_e2e_k"] == "v"
    assert shown["owner"] == "admin"
    assert json.loads(shown["tags"]) == ["shown"]


def test_image_list_filters(cli: GlanceCli, gc: Any) -> None:
    tag = f"cli-list-{_uid()}"
    group = f"g-{_uid()}"
    names = [f"{tag}-{letter}" for letter in "bca"]
    ids = {}
    for index, name in enumerate(names):
        fields: dict[str, Any] = {"name": name, "tags": [tag]}
        if index != 1:
            fields["glimpse_e2e_group"] = group
        ids[name] = _api_create(gc, **fields).id

    by_property = list_table(
        cli.run("image-list", "--property-filter", f"glimpse_e2e_group={group}").stdout)
    assert sorted(row["Name"] for row in by_property) == sorted([names[0], names[2]])
    assert all(row["ID"] == ids[row["Name"]] for row in by_property)

    # one image per page: the client follows `next` until the listing ends
    by_tag = list_table(cli.run("image-list", "--tag", tag, "--sort-key", "name",
                                "--sort-dir", "asc", "--page-size", "1").stdout)
    assert [row["Name"] for row in by_tag] == sorted(names)

    limited = list_table(cli.run("image-list", "--tag", tag, "--sort", "name:desc",
                                 "--limit", "2").stdout)
    assert [row["Name"] for row in limited] == sorted(names, reverse=True)[:2]


def test_image_update_property(cli: GlanceCli, gc: Any) -> None:
    image = _api_create(gc, glimpse_e2e_keep="1", glimpse_e2e_change="old",
                        glimpse_e2e_drop="x")
    result = cli.run("image-update", image.id, "--name", "cli-updated",
                     "--property", "glimpse_e2e_change=new", "--property", "glimpse_e2e_add=yes",
                     "--remove-property", "glimpse_e2e_drop", "--min-disk", "3")
    shown = property_table(result.stdout)
    assert shown["name"] == "cli-updated"
    assert shown["glimpse_e2e_change"] == "new"
    assert shown["glimpse_e2e_add"] == "yes"
    assert shown["glimpse_e2e_keep"] == "1"
    assert "glimpse_e2e_drop" not in shown
    assert shown["min_disk"] == "3"

    stored = gc.images.get(image.id)
    assert stored.glimpse_e2e_change == "new"
    assert stored.glimpse_e2e_add == "yes"
    assert "glimpse_e2e_drop" not in stored
    assert stored.min_disk == 3


def test_image_tag_update_and_delete(cli: GlanceCli, gc: Any) -> None:
    image = _api_create(gc, tags=["first"])
    rows = list_table(cli.run("image-tag-update", image.id, "second").stdout)
    assert len(rows) == 1
    assert rows[0]["ID"] == image.id
    assert "second" in rows[0]["Tags"]
    assert sorted(gc.images.get(image.id).tags) == ["first", "second"]

    cli.run("image-tag-delete", image.id, "first")
    assert gc.images.get(image.id).tags == ["second"]


def test_image_download(cli: GlanceCli, gc: Any, tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 77)
    image = _api_create(gc, data)

    target = tmp_path / "downloaded.raw"
    cli.run("image-download", image.id, "--file", str(target))
    assert target.read_bytes() == data

    # without --file and with stdout not a tty, the data goes to stdout
    returncode, stdout, stderr = cli.run_binary("image-download", image.id)
    assert returncode == 0, stderr
    assert stdout == data


def test_image_deactivate_and_reactivate(cli: GlanceCli, gc: Any, tmp_path: Path) -> None:
    data = os.urandom(MIB // 4)
    image = _api_create(gc, data)

    cli.run("image-deactivate", image.id)
    assert gc.images.get(image.id).status == "deactivated"
    # as admin (no-auth mode) the data is still downloadable while deactivated
    target = tmp_path / "while-deactivated.raw"
    cli.run("image-download", image.id, "--file", str(target))
    assert target.read_bytes() == data

    cli.run("image-reactivate", image.id)
    assert gc.images.get(image.id).status == "active"


def test_image_delete_and_show_missing(cli: GlanceCli, gc: Any) -> None:
    image = _api_create(gc, os.urandom(1000))
    cli.run("image-delete", image.id)

    missing = cli.run("image-show", image.id, ok=False)
    assert missing.returncode != 0
    assert "404" in missing.stderr
    assert image.id in missing.stderr  # the server's message names the image
    assert "Traceback" not in missing.stderr


def test_image_delete_protected_fails(cli: GlanceCli, gc: Any) -> None:
    image = _api_create(gc, protected=True)
    result = cli.run("image-delete", image.id, ok=False)
    assert result.returncode != 0
    # the CLI replaces a 403 on delete with its own sentence (GC v2/shell.py do_image_delete)
    assert "not permitted to delete" in result.stderr
    assert gc.images.get(image.id).status == "queued"
    gc.images.update(image.id, protected=False)
    gc.images.delete(image.id)
