"""A real Keystone for identity tests: started by `scripts/keystone`, real tokens from it.

`start_keystone(dir)` starts one (warm start: a few seconds; the first ever on a machine also
builds the cached virtualenv and template, see docs/identity-testing.md); `Keystone.from_facts`
attaches to one already running, from the `keystone.json` that `scripts/keystone start` wrote.

Accounts (keys of `Keystone.accounts`): `admin` (admin on project admin), `glimpse` (admin and
service on project service: the service user a Glimpse in keystone mode validates tokens with),
and `alpha-member`, `alpha-reader`, `beta-member`, `beta-reader` (role member, which implies
reader, or reader alone, on projects alpha and beta).

Tokens are project-scoped on the account's project:
- `token(name)`: a fresh valid token;
- `revoked_token(name)`: a token revoked with `DELETE /v3/auth/tokens`;
- `expired_token(name)`: a token whose own expiry has passed. Keystone caps the expiry of a token
  issued for an application credential at the credential's `expires_at`, so the token comes from
  an application credential that expires a couple of seconds later, and the call waits those
  seconds out. Keystone still knows the token: `validate(t, allow_expired=True)` accepts it
  within `[token] allow_expired_window`, which tells it apart from garbage.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "keystone"
#: The facts file `scripts/keystone start DIR` writes into DIR.
FACTS = "keystone.json"


@dataclass(frozen=True)
class Account:
    """A Keystone user and the project its tokens are scoped to."""

    name: str
    username: str
    password: str
    user_id: str
    project_name: str
    project_id: str
    roles: tuple[str, ...]
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"

    def password_auth(self) -> dict[str, Any]:
        """The body of a project-scoped password `POST /v3/auth/tokens`."""
        return {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.username, "password": self.password,
                "domain": {"name": self.user_domain_name}}}},
            "scope": {"project": {"id": self.project_id}},
        }}


@dataclass
class Keystone:
    """A running Keystone, as its facts file describes it."""

    url: str
    auth_url: str
    region: str
    image_url: str
    projects: dict[str, str]
    accounts: dict[str, Account]
    directory: Path | None = None
    _expired: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_facts(cls, path: Path, directory: Path | None = None) -> Keystone:
        facts = json.loads(path.read_text())
        accounts = {
            name: Account(name=name, username=a["username"], password=a["password"],
                          user_id=a["user_id"], project_name=a["project_name"],
                          project_id=a["project_id"], roles=tuple(a["roles"]),
                          user_domain_name=a["user_domain_name"],
                          project_domain_name=a["project_domain_name"])
            for name, a in facts["accounts"].items()
        }
        return cls(url=facts["url"], auth_url=facts["auth_url"], region=facts["region"],
                   image_url=facts["image_url"], projects=dict(facts["projects"]),
                   accounts=accounts, directory=directory)

    @property
    def facts_path(self) -> Path | None:
        return self.directory / FACTS if self.directory else None

    def issue(self, body: dict[str, Any]) -> httpx.Response:
        """`POST /v3/auth/tokens` with `body`, whatever the answer."""
        return httpx.post(f"{self.auth_url}/auth/tokens", json=body, timeout=60)

    def authenticate(self, name: str) -> dict[str, Any]:
        """A fresh token for account `name`: {"id": ..., "token": the token document}."""
        response = self.issue(self.accounts[name].password_auth())
        response.raise_for_status()
        return {"id": response.headers["X-Subject-Token"], "token": response.json()["token"]}

    def token(self, name: str) -> str:
        """A fresh valid token for account `name`."""
        return str(self.authenticate(name)["id"])

    def validate(self, token: str, *, allow_expired: bool = False) -> httpx.Response:
        """`GET /v3/auth/tokens` for `token`, as the service user (what auth_token does)."""
        params = {"allow_expired": "1"} if allow_expired else {}
        return httpx.get(f"{self.auth_url}/auth/tokens", params=params, timeout=60,
                         headers={"X-Auth-Token": self.token("glimpse"),
                                  "X-Subject-Token": token})

    def revoked_token(self, name: str) -> str:
        """A token of account `name` that its owner has revoked."""
        token = self.token(name)
        response = httpx.delete(f"{self.auth_url}/auth/tokens", timeout=60,
                                headers={"X-Auth-Token": token, "X-Subject-Token": token})
        response.raise_for_status()
        return token

    def expired_token(self, name: str) -> str:
        """A token of account `name` past its expiry (made once per account, then reused)."""
        if name not in self._expired:
            self._expired[name] = self._make_expired_token(name)
        return self._expired[name]

    def _make_expired_token(self, name: str) -> str:
        account = self.accounts[name]
        owner = {"X-Auth-Token": self.token(name)}
        # The credential must still be valid when the token is issued; on a loaded machine the
        # two requests may take longer than the first window, so widen it and try again.
        for window in (2.0, 5.0, 15.0):
            expires = datetime.now(UTC) + timedelta(seconds=window)
            created = httpx.post(
                f"{self.auth_url}/users/{account.user_id}/application_credentials",
                headers=owner, timeout=60, json={"application_credential": {
                    "name": f"expiring-{uuid.uuid4().hex[:8]}",
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")}})
            created.raise_for_status()
            credential = created.json()["application_credential"]
            issued = self.issue({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": credential["id"],
                                           "secret": credential["secret"]}}}})
            if issued.status_code != 201:
                continue
            expiry = datetime.fromisoformat(issued.json()["token"]["expires_at"])
            # Wait until Keystone's clock (this machine's) is past the token's expiry.
            time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.5)
            return str(issued.headers["X-Subject-Token"])
        raise RuntimeError(f"could not get an application-credential token for {name}")

    def stop(self) -> None:
        """Stop this Keystone (only one this process started: `directory` is set)."""
        if self.directory is not None:
            subprocess.run([str(SCRIPT), "stop", str(self.directory)], check=True,
                           capture_output=True)

    def set_image_endpoint(self, url: str) -> None:
        """Point the catalog's image endpoints at `url` (e.g. a Glimpse started later)."""
        assert self.directory is not None, "only for a Keystone this process started"
        subprocess.run([str(SCRIPT), "image-endpoint", str(self.directory), url], check=True,
                       capture_output=True)
        self.image_url = url


def start_keystone(directory: Path, image_url: str | None = None,
                   port: int | None = None) -> Keystone:
    """Start a Keystone from `directory` with `scripts/keystone start`; stop it with `stop()`."""
    command = [str(SCRIPT), "start", str(directory)]
    if image_url:
        command += ["--image-url", image_url]
    if port:
        command += ["--port", str(port)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/keystone start failed:\n{done.stdout}{done.stderr}")
    return Keystone.from_facts(directory / FACTS, directory=directory)
