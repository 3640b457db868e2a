"""`use_keystone_limits`: the per-project limits from Keystone unified limits, via oslo.limit.

The limits of the `image` service's endpoint (`keystone_limits_endpoint_id`, or the one endpoint
of `keystone_limits_endpoint_service_type` in `keystone_limits_endpoint_region_name` on
`keystone_limits_endpoint_interface`), as Glance reads them: a project limit of the project
beats the registered limit (the default), and a resource with neither is 0, which allows nothing
(oslo.limit's rule, so Glance's). -1 is no limit. Keystone holds `image_size_total` and
`image_stage_total` in MiB (Glance's unit); Glimpse counts bytes, so they are multiplied by 2**20.

oslo.limit reads its `[oslo_limit]` options from the process-global `oslo_config.cfg.CONF` (its
`Enforcer` takes no configuration object). Nothing else in Glimpse uses that object (oslo.policy
and keystonemiddleware get private ones), so the options are set on it from the settings, with
`set_override`, and no configuration file is ever read: the service credentials are the
`keystone_*` ones of `auth = keystone`. oslo.limit also keeps one Keystone connection per process.

A project's limits are remembered for `keystone_limits_cache_time` seconds, so a request costs no
Keystone round trip (a changed limit takes effect within that time); a lookup asks Keystone on a
small thread pool (oslo.limit blocks), once for all concurrent requests of the same project. A
Keystone that cannot answer (down, refusing the credentials, no such endpoint, an enforcement
model oslo.limit does not support) gives `IdentityUnavailable` (503): never a pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

from glimpse.api.errors import IdentityUnavailable
from glimpse.config import Settings
from glimpse.domain.quotas import NAMES, ProjectLimits

log = logging.getLogger(__name__)

#: Quotas Glance registers in MiB; Glimpse counts bytes.
IN_MIB = frozenset({"image_size_total", "image_stage_total"})
MIB = 1024 * 1024
GROUP = "oslo_limit"
#: Threads asking Keystone; lookups are rare (one per project per cache time).
THREADS = 4
UNAVAILABLE = "The Keystone service is temporarily unavailable; the quota limits cannot be read"


def from_keystone(values: Collection[tuple[str, int]]) -> ProjectLimits:
    """`ProjectLimits` from oslo.limit's (resource name, limit) pairs: -1 (or below) is no
    limit, sizes in MiB become bytes."""
    limits: dict[str, int | None] = {}
    for name, value in values:
        if name in NAMES:
            limits[name] = None if value < 0 else value * (MIB if name in IN_MIB else 1)
    return ProjectLimits(**limits)


def configure(settings: Settings) -> None:
    """Point oslo.limit's `[oslo_limit]` options (in the global CONF) at `settings`."""
    from keystoneauth1 import loading
    from oslo_config import cfg
    from oslo_limit import limit  # noqa: F401  (registers the [oslo_limit] options)

    conf = cfg.CONF
    # Registering the same options again is a no-op, so building a second app is harmless.
    conf.register_opts(loading.get_auth_plugin_conf_options("password"), group=GROUP)
    values = {
        "auth_type": "password",
        "auth_url": settings.keystone_auth_url,
        "username": settings.keystone_username,
        "password": settings.keystone_password,
        "project_name": settings.keystone_project_name,
        "user_domain_name": settings.keystone_user_domain_name,
        "project_domain_name": settings.keystone_project_domain_name,
        "timeout": settings.keystone_timeout,
        "endpoint_id": settings.keystone_limits_endpoint_id or None,
        "endpoint_service_type": settings.keystone_limits_endpoint_service_type or None,
        "endpoint_region_name": settings.keystone_limits_endpoint_region_name or None,
        "endpoint_interface": settings.keystone_limits_endpoint_interface,
    }
    for name, value in values.items():
        conf.set_override(name, value, group=GROUP)


def _no_usage(project: str | None, resources: Collection[str]) -> dict[str, int]:
    # Only limits are read here; usage is counted by the registry.
    return dict.fromkeys(resources, 0)


class KeystoneLimits:
    """A `QuotaSource` answering from Keystone unified limits (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        configure(settings)
        self._cache_time = settings.keystone_limits_cache_time
        self._cache: dict[str, tuple[float, ProjectLimits]] = {}
        self._pending: dict[str, asyncio.Future[ProjectLimits]] = {}
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="limits")

    @property
    def enforced(self) -> bool:
        # A resource without any limit is 0, so every project is limited.
        return True

    async def limits(self, project: str) -> ProjectLimits:
        remembered = self._cache.get(project)
        if remembered is not None and time.monotonic() < remembered[0]:
            return remembered[1]
        pending = self._pending.get(project)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(project))
            self._pending[project] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(project, None))
        # shield: one caller going away must not cancel the lookup the others wait for.
        return await asyncio.shield(pending)

    async def _lookup(self, project: str) -> ProjectLimits:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._pool, self._fetch, project)
        if self._cache_time > 0:
            self._cache[project] = (time.monotonic() + self._cache_time, found)
        return found

    def _fetch(self, project: str) -> ProjectLimits:
        """Runs in a pool thread: the project's limits, asked of Keystone now."""
        from keystoneauth1 import exceptions as ksa
        from openstack import exceptions as sdk
        from oslo_limit import exception as oslo_limit_errors
        from oslo_limit import limit

        try:
            # A fresh enforcer per lookup: its own cache lives as long as it does, which
            # would never let a changed limit through; ours expires.
            enforcer = limit.Enforcer(_no_usage, cache=True)
            return from_keystone(enforcer.get_project_limits(project, NAMES))
        except (ksa.ClientException, sdk.SDKException,
                oslo_limit_errors.SessionInitError) as exc:
            log.error("Keystone limits of project %s cannot be read: %s", project, exc)
            # The cause is in the line above; its chain (urllib3 upwards) would only add noise
            # to the traceback the error table logs for every 5xx.
            raise IdentityUnavailable(f"{UNAVAILABLE}.") from None
        except (ValueError, NotImplementedError) as exc:
            # No such endpoint or service, several of them, or an enforcement model other
            # than flat: the configuration cannot work until an operator acts.
            reason = str(exc) or "the strict-two-level enforcement model is not supported"
            log.error("Keystone limits of project %s cannot be read: %s", project, reason)
            raise IdentityUnavailable(f"{UNAVAILABLE}: {reason}.") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
