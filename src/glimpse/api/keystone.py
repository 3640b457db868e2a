"""`auth = keystone`: tokens validated by keystonemiddleware's `auth_token` against Keystone v3.

`auth_token` is WSGI middleware. Each worker keeps one long-lived `AuthProtocol` (so one
service session and one token cache) around a tiny WSGI app that only records the identity
headers `auth_token` sets for a confirmed token. A request's token goes through it as a
minimal WSGI environ holding nothing but `X-Auth-Token` (and `X-Service-Token`), on a bounded
thread pool: validation blocks on HTTP to Keystone, the event loop never does. Nothing the client
sent besides the tokens reaches it, so its identity headers are never trusted.

Outcomes: confirmed → the context (user, project, their domains, lower-cased roles, and the
roles of a valid service token); no, invalid, expired or revoked token → 401 with
`WWW-Authenticate: Keystone uri="<keystone_www_authenticate_uri>"` (what `auth_token` sends);
Keystone unreachable or failing → 503, never a pass and never a 500.

Token cache: `auth_token`'s own, in process (memcached is not used), `keystone_token_cache_time`
seconds (a token's expiry is still checked on every hit). A token revoked after this worker
cached it is accepted until its cache entry lapses, as in Glance with the same setting; one
revoked before it is first seen here is refused at once. In front of it, on the event loop, the
contexts of confirmed tokens are remembered for the same time (never past the token's expiry):
a hit then costs a dictionary lookup instead of a thread hop and `auth_token`'s decoding of its
cache entry (together about 1.5 ms a request here, half of a show's time), and the bounds of a
revocation are the same as `auth_token`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from glimpse.api.errors import ApiError, IdentityUnavailable, Unauthenticated
from glimpse.api.identity import RawHeaders, header, presented_token, roles_of
from glimpse.config import ConfigError, Settings
from glimpse.domain.context import RequestContext

log = logging.getLogger(__name__)

#: Threads running validations: cache hits take well under a millisecond, misses wait on
#: Keystone; more would only queue more work on a Keystone that is slow already.
THREADS = 8
UNAVAILABLE = "The Keystone service is temporarily unavailable; the token cannot be validated."
#: The environ keys (set by `auth_token` for a confirmed token) the context is made from.
_IDENTITY_KEYS = ("HTTP_X_IDENTITY_STATUS", "HTTP_X_USER_ID", "HTTP_X_PROJECT_ID",
                  "HTTP_X_ROLES", "HTTP_X_USER_DOMAIN_ID", "HTTP_X_PROJECT_DOMAIN_ID",
                  "HTTP_X_SERVICE_ROLES", "HTTP_X_SERVICE_IDENTITY_STATUS", "HTTP_X_DOMAIN_ID",
                  "HTTP_OPENSTACK_SYSTEM_SCOPE")

StartResponse = Callable[..., Any]


def _not_the_cache_deprecation(record: logging.LogRecord) -> bool:
    # Without memcached the in-process cache is the one wanted (one per worker); auth_token
    # calls it deprecated on every start, which would only alarm operators.
    return not str(record.msg).startswith("Using the in-process token cache is deprecated")


logging.getLogger("keystonemiddleware.auth_token").addFilter(_not_the_cache_deprecation)


#: Confirmed tokens remembered on the event loop (the oldest is forgotten first).
MEMO_MAX = 10_000


def _record(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI app behind `auth_token`: reached only with a confirmed token."""
    found: dict[str, Any] = {k: environ.get(k) for k in _IDENTITY_KEYS}
    tokens = environ.get("keystone.token_auth")
    expiries = [ref.expires.timestamp() for ref in (getattr(tokens, "user", None),
                                                     getattr(tokens, "service", None))
                if ref is not None and getattr(ref, "expires", None) is not None]
    found["expires"] = min(expiries) if expiries else 0.0
    environ["glimpse.identity"] = found
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


def _options(settings: Settings) -> dict[str, Any]:
    """`auth_token`'s options, with a private oslo.config object holding the service
    credentials: nothing is read from files, the command line or the process's global CONF."""
    from keystoneauth1 import loading
    from oslo_config import cfg

    group = "keystone_authtoken"
    conf = cfg.ConfigOpts()
    conf([], project="glimpse", default_config_files=[], default_config_dirs=[])
    conf.register_opts(loading.get_auth_plugin_conf_options("password"), group=group)
    for name, value in (
        ("auth_url", settings.keystone_auth_url),
        ("username", settings.keystone_username),
        ("password", settings.keystone_password),
        ("project_name", settings.keystone_project_name),
        ("user_domain_name", settings.keystone_user_domain_name),
        ("project_domain_name", settings.keystone_project_domain_name),
    ):
        conf.set_override(name, value, group=group)
    options = {
        "oslo_config_config": conf,
        "auth_type": "password",
        "www_authenticate_uri": settings.www_authenticate_uri,
        "delay_auth_decision": False,  # auth_token answers 401/503 itself
        "service_token_roles_required": True,
        "include_service_catalog": False,
        "token_cache_time": settings.keystone_token_cache_time,
        "http_connect_timeout": max(1, round(settings.keystone_timeout)),
        "http_request_max_retries": 1,
    }
    return options


class KeystoneAuthenticator:
    """Validates `X-Auth-Token` with keystonemiddleware (see the module docstring)."""

    requires_credentials = True

    def __init__(self, settings: Settings) -> None:
        from keystonemiddleware.auth_token import AuthProtocol

        self.challenge = f'Keystone uri="{settings.www_authenticate_uri}"'
        self._protocol = AuthProtocol(_record, _options(settings))
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="keystone")
        self._memo_time = float(settings.keystone_token_cache_time)
        self._memo: dict[tuple[str, str | None], tuple[float, RequestContext]] = {}

    async def authenticate(self, headers: RawHeaders, request_id: str) -> RequestContext:
        headers = list(headers)
        token = presented_token(headers)
        if token is None:
            raise Unauthenticated(self.challenge)
        service_token = header(headers, b"x-service-token")
        key = (token, service_token)
        remembered = self._memo.get(key)
        if remembered is not None:
            if time.time() < remembered[0]:
                return dataclasses.replace(remembered[1], request_id=request_id)
            del self._memo[key]
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._pool, self._validate, token, service_token)
        if found.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":  # auth_token's promise
            raise Unauthenticated(self.challenge)
        context = self._context(found, token, request_id)
        if self._memo_time > 0:
            if len(self._memo) >= MEMO_MAX:
                del self._memo[next(iter(self._memo))]
            self._memo[key] = (min(time.time() + self._memo_time, found["expires"]), context)
        return context

    @staticmethod
    def _context(found: dict[str, Any], token: str, request_id: str) -> RequestContext:
        service_roles = (roles_of(found.get("HTTP_X_SERVICE_ROLES"))
                         if found.get("HTTP_X_SERVICE_IDENTITY_STATUS") == "Confirmed"
                         else frozenset())
        return RequestContext(
            project_id=found.get("HTTP_X_PROJECT_ID") or None,
            roles=roles_of(found.get("HTTP_X_ROLES")),
            user_id=found.get("HTTP_X_USER_ID") or None,
            request_id=request_id,
            user_domain_id=found.get("HTTP_X_USER_DOMAIN_ID") or None,
            project_domain_id=found.get("HTTP_X_PROJECT_DOMAIN_ID") or None,
            service_roles=service_roles,
            domain_id=found.get("HTTP_X_DOMAIN_ID") or None,
            system_scope=found.get("HTTP_OPENSTACK_SYSTEM_SCOPE") or None,
            auth_token=token,
            authenticated=True,
        )

    def _validate(self, token: str, service_token: str | None) -> dict[str, Any]:
        """Runs in a pool thread: the identity `auth_token` established for `token`."""
        from keystoneauth1 import exceptions as ksa

        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
            "SERVER_NAME": "glimpse", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "HTTP_X_AUTH_TOKEN": token,
        }
        if service_token:
            environ["HTTP_X_SERVICE_TOKEN"] = service_token
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> None:
            answer["status"], answer["headers"] = status, headers

        try:
            body = b"".join(self._protocol(environ, start_response))
        except ksa.ClientException as exc:  # e.g. no identity endpoint in the catalog
            log.error("token validation failed: %s", exc)
            raise IdentityUnavailable(UNAVAILABLE) from exc
        status = int(str(answer.get("status", "500")).split()[0])
        if status == 200 and "glimpse.identity" in environ:
            return dict(environ["glimpse.identity"])
        if status == 401:
            raise Unauthenticated(self.challenge)
        if status >= 500:
            raise IdentityUnavailable(UNAVAILABLE)
        # auth_token refused the request some other way (e.g. a malformed token header).
        raise ApiError(status, body.decode("utf-8", "replace")[:200] or "Invalid credentials.")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def check_service_account(settings: Settings) -> str | None:
    """Ask Keystone at start-up whether the service credentials work and may validate tokens.

    Raises `ConfigError` when Keystone refuses them (wrong user, password, project or domain) or
    when the user may not validate tokens (it needs the `service` or `admin` role). Returns a
    warning when Keystone cannot be reached: the server starts and answers 503 until it can.
    """
    from keystoneauth1 import exceptions as ksa
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=settings.keystone_auth_url, username=settings.keystone_username,
        password=settings.keystone_password, project_name=settings.keystone_project_name,
        user_domain_name=settings.keystone_user_domain_name,
        project_domain_name=settings.keystone_project_domain_name,
    )
    sess = session.Session(auth=auth, timeout=settings.keystone_timeout)
    try:
        access = auth.get_access(sess)
        # Keystone's default identity:validate_token policy admits these roles (and a token's
        # own subject, so validating our own token would prove nothing).
        if not {"service", "admin"} & {r.lower() for r in access.role_names or ()}:
            raise ConfigError(f"keystone_username: {settings.keystone_username!r} may not "
                              "validate tokens; give it the service role on "
                              f"{settings.keystone_project_name!r}")
        # Through the catalog's internal identity endpoint, as auth_token reaches Keystone.
        sess.get("/auth/tokens", endpoint_filter={"service_type": "identity",
                                                  "interface": "internal"},
                 headers={"X-Subject-Token": access.auth_token}, authenticated=True)
    except ksa.Unauthorized as exc:
        raise ConfigError(f"keystone_username: Keystone at {settings.keystone_auth_url} "
                          f"refused the service credentials ({exc.message})") from exc
    except ksa.Forbidden as exc:
        raise ConfigError(f"keystone_username: {settings.keystone_username!r} may not validate "
                          "tokens; give it the service role") from exc
    except (ksa.ConnectFailure, ksa.DiscoveryFailure, ksa.RequestTimeout,
            ksa.EndpointNotFound, ksa.HttpError) as exc:
        return (f"Keystone at {settings.keystone_auth_url} cannot be asked now ({exc}); "
                "requests get 503 until it answers")
    finally:
        sess.session.close()
    return None
