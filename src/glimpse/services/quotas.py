"""Per-project quotas: where the limits come from, what `GET /v2/info/usage` shows, and the
byte budget an upload streams against.

Limits come from a `QuotaSource`. `ConfiguredLimits` gives every project the limits of the
configuration (`image_count_total`, `image_size_total`, `image_stage_total`,
`image_count_uploading`; -1 is no limit). With `use_keystone_limits`, `api.limits.KeystoneLimits`
answers `limits(project)` from Keystone unified limits (through oslo.limit, cached a short
time); it raises the HTTP edge's 503 when Keystone cannot answer, which passes through here.

Where the checks happen (all refusals are `TooLarge`, 413, naming the quota):

- exact, inside the registry transaction that would pass the limit, serialized per project
  (`registry/usage.py`): creating an image (`image_count_total`), an upload beginning
  (`image_count_uploading`), an upload finishing (`image_size_total`), data staged
  (`image_stage_total`);
- on a snapshot of usage taken before an upload begins (`UploadBudget`): a declared size is
  refused before any byte is read, and the stream stops as soon as it would pass the limit.
  Concurrent uploads can all pass the snapshot; the finishing check keeps the total exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden
from glimpse.domain.ports import UsageRepository
from glimpse.domain.quotas import NAMES, ProjectLimits, Usage
from glimpse.services.policy import expanded


class QuotaSource(Protocol):
    """The limits of each project."""

    @property
    def enforced(self) -> bool:
        """Whether any project may have a limit; if not, quota work is skipped entirely."""
        ...

    async def limits(self, project: str) -> ProjectLimits:
        """The limits of `project` (None fields: unlimited). A source that cannot tell now
        raises (never answers "unlimited" instead)."""
        ...


class ConfiguredLimits:
    """The same limits, from the configuration, for every project."""

    def __init__(self, limits: ProjectLimits) -> None:
        self._limits = limits

    @classmethod
    def of(cls, **values: int) -> ConfiguredLimits:
        """From settings values by quota name, -1 (or any negative) meaning no limit."""
        return cls(ProjectLimits(**{name: (None if value < 0 else value)
                                    for name, value in values.items()}))

    @property
    def enforced(self) -> bool:
        return not self._limits.unlimited

    async def limits(self, project: str) -> ProjectLimits:
        return self._limits


@dataclass(frozen=True)
class QuotaUsage:
    """One line of `GET /v2/info/usage`: `limit` is -1 when unlimited."""

    name: str
    limit: int
    usage: int


@dataclass(frozen=True)
class UploadBudget:
    """What an upload of an image of `project` may add, as a snapshot of usage saw it."""

    project: str
    limits: ProjectLimits
    usage: Usage

    @property
    def bytes_left(self) -> int | None:
        """Bytes the upload may store before passing `image_size_total`; None: no limit."""
        limit = self.limits.image_size_total
        return None if limit is None else limit - self.usage.image_size_total

    def check(self, size: int) -> None:
        """`TooLarge` if `size` more bytes would pass `image_size_total`."""
        self.limits.check("image_size_total", self.project,
                          self.usage.image_size_total + size, size)

    def check_staged(self, size: int) -> None:
        """`TooLarge` if `size` more bytes in staging would pass `image_stage_total`."""
        self.limits.check("image_stage_total", self.project,
                          self.usage.image_stage_total + size, size)


class QuotaService:
    def __init__(self, source: QuotaSource, usage: UsageRepository) -> None:
        self._source = source
        self._usage = usage

    @property
    def enforced(self) -> bool:
        return self._source.enforced

    async def limits(self, project: str | None) -> ProjectLimits:
        """The limits of `project`; none for images without an owner or without quotas."""
        if project is None or not self._source.enforced:
            return ProjectLimits()
        return await self._source.limits(project)

    async def budget(self, project: str | None) -> UploadBudget | None:
        """The budget of an upload to an image of `project`, or None if nothing limits it."""
        limits = await self.limits(project)
        if project is None or limits.unlimited:
            return None
        return UploadBudget(project, limits, await self._usage.usage(project))

    async def report(self, ctx: RequestContext) -> list[QuotaUsage]:
        """Limit and usage of every quota of the caller's project (`GET /v2/info/usage`).

        Any reader (or member, or admin) of a project sees its own project's usage; a caller
        acting for no project, or with no role on it, gets `Forbidden`.
        """
        project = ctx.project_id
        if project is None:
            raise Forbidden("Quota usage is counted per project, and the request acts for "
                            "none.")
        if "reader" not in expanded(ctx.roles):
            raise Forbidden(f"You are not permitted to see the quota usage of project "
                            f"{project}.")
        limits = await self.limits(project)
        usage = await self._usage.usage(project)
        return [QuotaUsage(name, -1 if getattr(limits, name) is None else getattr(limits, name),
                           getattr(usage, name)) for name in NAMES]
