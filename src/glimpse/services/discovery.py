"""`GET /v2/info/stores` (API 2.8) and its admin `detail`: the stores this server writes to.

Only with several stores configured (`[stores.<id>]` tables), as Glance answers only with
`enabled_backends`: otherwise both are 404, which is how clients (and Tempest) learn that
multi-store is off. Stores are listed heaviest weight first; credentials never appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden, NotFound
from glimpse.services.policy import Policy
from glimpse.stores.base import Store

#: Driver options safe to show in `detail` (never users, keys or secrets).
SHOWN_OPTIONS = frozenset({"path", "container", "bucket", "region", "endpoint_url",
                           "large_object_size", "segment_size", "multipart_threshold",
                           "part_size", "auth_version", "addressing_style"})


@dataclass(frozen=True)
class StoreEntry:
    id: str
    description: str
    default: bool
    read_only: bool
    driver: str = ""
    weight: int = 0
    properties: dict[str, object] = field(default_factory=dict)


class StoreDiscovery:
    def __init__(self, stores: dict[str, Store], default_id: str, multistore: bool,
                 policy: Policy, drivers: dict[str, tuple[str, dict[str, object]]]) -> None:
        self._stores = stores
        self._default = default_id
        self._multistore = multistore
        self._policy = policy
        self._drivers = drivers

    @property
    def multistore(self) -> bool:
        return self._multistore

    def _entries(self) -> list[StoreEntry]:
        if not self._multistore:
            raise NotFound("Multi backend is not supported at this site.")
        out = []
        for store in self._stores.values():
            driver, options = self._drivers.get(store.id, ("", {}))
            out.append(StoreEntry(
                store.id, store.description, store.id == self._default,
                not store.capabilities.write, driver, store.weight,
                {k: v for k, v in options.items() if k in SHOWN_OPTIONS}))
        return out

    def writable(self) -> list[str]:
        """Ids of the stores uploads may go to, heaviest first."""
        return [s.id for s in self._stores.values() if s.capabilities.write]

    def summary(self, ctx: RequestContext) -> list[StoreEntry]:
        return self._entries()

    def detail(self, ctx: RequestContext) -> list[StoreEntry]:
        entries = self._entries()
        if not self._policy.allows("stores_info_detail", ctx, {"project_id": ctx.project_id}):
            raise Forbidden("You are not permitted to see the details of the stores.")
        return entries
