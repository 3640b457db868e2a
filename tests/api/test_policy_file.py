"""An operator's policy file overrides Glance's default rules by name, as it would Glance's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import assert_error, create_active
from tests.servers import Server, start_server

MEMBER = {"X-Project-Id": "p1", "X-Roles": "member"}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory,
           connect: Callable[..., httpx.Client]) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("policy")
    rules = folder / "policy.yaml"
    # Glance-style overrides: only admins create; nobody downloads; the rest stays default.
    rules.write_text('"add_image": "role:admin"\n"download_image": "!"\n')
    server: Server = start_server(folder / "data", policy_file=rules)
    yield connect(server.url)
    server.stop()


def test_overridden_rules_apply(strict: httpx.Client) -> None:
    assert_error(strict.post("/v2/images", json={}, headers=MEMBER), 403)
    image = create_active(strict)  # the admin still creates and uploads
    assert_error(strict.get(f"/v2/images/{image['id']}/file"), 403)  # even the admin


def test_rules_not_named_keep_glance_defaults(strict: httpx.Client) -> None:
    image = create_active(strict, visibility="public")
    assert strict.get(f"/v2/images/{image['id']}", headers=MEMBER).status_code == 200
    patch = strict.patch(f"/v2/images/{image['id']}", content=b"[]", headers={
        **MEMBER, "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert_error(patch, 403)  # modify_image: owner or admin, as by default


@pytest.mark.parametrize(("content", "said"), [
    (None, "policy_file: no such file"),
    ('"add_image": "role:admin or (\n', "policy_file: policy file"),
])
def test_a_broken_policy_file_stops_serve(tmp_path: Path, content: str | None,
                                          said: str) -> None:
    rules = tmp_path / "policy.yaml"
    if content is not None:
        rules.write_text(content)
    done = subprocess.run([sys.executable, "-m", "glimpse", "serve", "--data-dir",
                           str(tmp_path / "d")], env={**__import__("os").environ,
                                                       "GLIMPSE_POLICY_FILE": str(rules)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr[-1000:]
    assert said in done.stderr
    assert "Traceback" not in done.stderr
