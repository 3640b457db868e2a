"""The Keystone harness itself, against the real Keystone: accounts, tokens, catalog, start/stop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.keystone import Keystone, start_keystone
from tests.servers import free_port

ACCOUNTS = ["admin", "glimpse", "alpha-member", "alpha-reader", "beta-member", "beta-reader"]


@pytest.mark.parametrize("name", ACCOUNTS)
def test_each_accounts_token_validates_with_its_project_and_roles(keystone: Keystone,
                                                                  name: str) -> None:
    account = keystone.accounts[name]
    response = keystone.validate(keystone.token(name))
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert token["user"]["id"] == account.user_id
    assert token["project"]["id"] == account.project_id == keystone.projects[
        account.project_name]
    roles = {r["name"] for r in token["roles"]}
    assert set(account.roles) <= roles
    if name.endswith("-reader"):
        assert roles == {"reader"}
    if name.endswith("-member"):
        assert roles == {"member", "reader"}  # member implies reader


def test_service_user_holds_service_role_on_project_service(keystone: Keystone) -> None:
    token = keystone.authenticate("glimpse")["token"]
    assert token["project"]["name"] == "service"
    assert {"admin", "service"} <= {r["name"] for r in token["roles"]}


def test_a_user_without_the_service_role_may_not_validate_others_tokens(
        keystone: Keystone) -> None:
    response = httpx.get(f"{keystone.auth_url}/auth/tokens", timeout=60, headers={
        "X-Auth-Token": keystone.token("alpha-reader"),
        "X-Subject-Token": keystone.token("alpha-member")})
    assert response.status_code == 403, response.text


def test_wrong_password_gets_no_token(keystone: Keystone) -> None:
    body = keystone.accounts["alpha-member"].password_auth()
    body["auth"]["identity"]["password"]["user"]["password"] = "not-the-password"
    assert keystone.issue(body).status_code == 401


def test_garbage_token_does_not_validate(keystone: Keystone) -> None:
    assert keystone.validate("gAAAAAnot-a-token").status_code == 404


def test_revoked_token_does_not_validate(keystone: Keystone) -> None:
    token = keystone.revoked_token("alpha-member")
    assert keystone.validate(token).status_code == 404
    # Revocation is final: not even the expired-token window of services lets it through.
    assert keystone.validate(token, allow_expired=True).status_code == 404


def test_expired_token_does_not_validate_but_is_a_real_token(keystone: Keystone) -> None:
    token = keystone.expired_token("alpha-member")
    assert keystone.validate(token).status_code == 404
    known = keystone.validate(token, allow_expired=True)
    assert known.status_code == 200, known.text
    document = known.json()["token"]
    assert document["user"]["id"] == keystone.accounts["alpha-member"].user_id
    assert document["project"]["id"] == keystone.projects["alpha"]
    assert datetime.fromisoformat(document["expires_at"]) < datetime.now(UTC)


def _endpoints(token: dict[str, object], service_type: str) -> dict[str, str]:
    catalog = token["catalog"]
    assert isinstance(catalog, list)
    for service in catalog:
        if service["type"] == service_type:
            return {e["interface"]: e["url"] for e in service["endpoints"]
                    if e["region_id"] == "RegionOne"}
    raise AssertionError(f"no {service_type} service in the catalog: {catalog}")


def test_catalog_has_the_image_endpoints(keystone: Keystone) -> None:
    token = keystone.authenticate("alpha-reader")["token"]
    assert _endpoints(token, "image") == dict.fromkeys(("public", "internal", "admin"),
                                                       keystone.image_url)


def test_catalog_identity_endpoint_is_this_keystone(keystone: Keystone) -> None:
    token = keystone.authenticate("admin")["token"]
    assert set(_endpoints(token, "identity").values()) == {keystone.auth_url}


def test_second_keystone_on_a_given_port_repoints_images_and_stops(tmp_path: Path) -> None:
    port = free_port()
    ks = start_keystone(tmp_path / "ks", image_url="http://127.0.0.1:1/first", port=port)
    try:
        assert ks.url == f"http://127.0.0.1:{port}"
        ks.set_image_endpoint("http://127.0.0.1:2/second")
        token = ks.authenticate("beta-member")["token"]
        assert set(_endpoints(token, "image").values()) == {"http://127.0.0.1:2/second"}
        assert ks.facts_path is not None
        assert Keystone.from_facts(ks.facts_path).image_url == "http://127.0.0.1:2/second"
    finally:
        ks.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{ks.auth_url}", timeout=5)
