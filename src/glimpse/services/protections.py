"""Property protections: which roles may create, read, update or delete which extra property.

The operator's file (`property_protection_file`) is Glance's INI file in the `roles` format:

    [^x_owner_.*]
    create = admin,member
    read = admin,member
    update = admin,member
    delete = admin,member

    [.*]
    create = admin
    read = admin
    update = admin
    delete = admin

The rules, as Glance applies them (`docs/protections.md`):

- A section name is a regular expression *searched* for in the property name (`re.search`,
  so it is not anchored unless it says `^`/`$`); the first section in file order that matches
  decides, and the sections after it are not consulted.
- Each section must give all four operations; each is a comma-separated list of roles, `@` for
  anyone, `!` for nobody (not both); an empty list lets nobody. Roles compare case-insensitively.
- A property that no section matches: nobody may do anything with it.
- A file with no section protects nothing. Base attributes (`views.BASE_KEYS`) are never
  protected: only extra properties are.
- The caller's roles are `RequestContext.roles` with the roles they imply (admin → member →
  reader, `policy.expanded`) and its service roles.

A broken file is refused when it is loaded (`ProtectionFileError`, naming the section), which
`config` does at start-up. Rules are compiled once; the decisions of one set of roles about one
property are cached, so listing a thousand images costs a dictionary look-up per property.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Forbidden
from glimpse.services.policy import expanded

Operation = Literal["create", "read", "update", "delete"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
ANYONE = "@"
NOBODY = "!"
#: Bounds of the caches, whose keys come from clients (role sets, property names).
_MAX_CALLERS = 512
_MAX_DECISIONS = 8192


class ProtectionFileError(ValueError):
    """The property protection file cannot be read, or a section of it is broken."""


@dataclass(frozen=True)
class Rule:
    """One section: its regular expression and, per operation, the roles it lets (lower case),
    or None where it lets anyone (`@`). An empty set lets nobody (`!` or no role)."""

    section: str
    pattern: re.Pattern[str]
    allowed: Mapping[Operation, frozenset[str] | None]

    def lets(self, operation: Operation, roles: frozenset[str]) -> bool:
        allowed = self.allowed[operation]
        return allowed is None or not allowed.isdisjoint(roles)


def _roles(section: str, operation: str, value: str) -> frozenset[str] | None:
    roles = {r.strip().lower() for r in value.split(",") if r.strip()}
    if ANYONE in roles and NOBODY in roles:
        raise ProtectionFileError(f"section [{section}]: {operation} = {value}: '@' and '!' "
                                  "are mutually exclusive")
    if ANYONE in roles:
        return None
    return frozenset(roles - {NOBODY})


def parse_rules(text: str, source: str = "<string>") -> list[Rule]:
    """The rules of a protection file's `text`, in file order; `ProtectionFileError` names what
    is broken (a section that is no regular expression, an unknown key, a missing operation,
    `@` with `!`, a duplicate section or key, a line that is no INI)."""
    # No interpolation: a `%` is a character, not a reference. Keys are case-insensitive (as
    # Glance's configparser reads them); section names keep their case, being expressions.
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ProtectionFileError(f"{source}: {exc.message}") from exc
    rules = []
    for section in parser.sections():
        try:
            pattern = re.compile(section)
        except re.error as exc:
            raise ProtectionFileError(f"{source}: section [{section}] is not a valid regular "
                                      f"expression: {exc}") from exc
        keys = parser[section]
        unknown = sorted(set(keys) - set(OPERATIONS))
        if unknown:
            raise ProtectionFileError(f"{source}: section [{section}]: unknown key "
                                      f"{unknown[0]!r}; the keys are "
                                      + ", ".join(OPERATIONS))
        missing = [op for op in OPERATIONS if op not in keys]
        if missing:
            raise ProtectionFileError(f"{source}: section [{section}]: missing "
                                      f"{missing[0]!r}; every section gives "
                                      + ", ".join(OPERATIONS))
        allowed = {op: _roles(section, op, keys[op]) for op in OPERATIONS}
        rules.append(Rule(section, pattern, allowed))
    return rules


class PropertyRules:
    """The compiled protection rules of a server (or none: `PropertyRules()` protects nothing).

    `access(ctx)` gives one caller's rights; it is cheap to call per request.
    """

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self._rules = tuple(rules)
        self._matches: dict[str, Rule | None] = {}
        self._callers: dict[frozenset[str], PropertyAccess] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> PropertyRules:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtectionFileError(f"cannot read {path}: {exc}") from exc
        return cls(parse_rules(text, str(path)))

    @property
    def enabled(self) -> bool:
        """Whether any property is protected (a file without sections protects none)."""
        return bool(self._rules)

    def rule_for(self, name: str) -> Rule | None:
        """The first rule whose expression is found in `name`, or None."""
        try:
            return self._matches[name]
        except KeyError:
            pass
        found = next((r for r in self._rules if r.pattern.search(name)), None)
        if len(self._matches) >= _MAX_DECISIONS:
            self._matches.clear()
        self._matches[name] = found
        return found

    def allows(self, operation: Operation, name: str, roles: frozenset[str]) -> bool:
        """Whether `roles` (lower case, implied roles included) may do `operation` on the
        extra property `name`."""
        if not self._rules:
            return True
        rule = self.rule_for(name)
        return rule is not None and rule.lets(operation, roles)

    def access(self, ctx: RequestContext) -> PropertyAccess:
        """The rights of the caller `ctx` (its roles, their implied roles, its service roles)."""
        if not self._rules:
            return UNRESTRICTED
        roles = frozenset(expanded(ctx.roles)) | ctx.service_roles
        found = self._callers.get(roles)
        if found is None:
            if len(self._callers) >= _MAX_CALLERS:
                self._callers.clear()
            found = self._callers[roles] = PropertyAccess(self, roles)
        return found


class PropertyAccess:
    """What one set of roles may do to extra properties, decisions cached. Without rules
    (`UNRESTRICTED`) everything is allowed."""

    def __init__(self, rules: PropertyRules | None, roles: frozenset[str]) -> None:
        self._rules = rules if rules is not None and rules.enabled else None
        self.roles = roles
        self._decisions: dict[tuple[Operation, str], bool] = {}

    @property
    def unrestricted(self) -> bool:
        return self._rules is None

    def may(self, operation: Operation, name: str) -> bool:
        if self._rules is None:
            return True
        key = (operation, name)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._rules.allows(operation, name, self.roles)
            if len(self._decisions) >= _MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def check(self, operation: Operation, name: str) -> None:
        """`Forbidden` (403) naming the property unless the caller may do `operation` on it."""
        if not self.may(operation, name):
            raise Forbidden(f"Property '{name}' is protected: you are not permitted to "
                            f"{operation} it.")

    def readable(self, properties: Mapping[str, str]) -> Mapping[str, str]:
        """The properties the caller may read (`properties` itself when it may read all)."""
        if self._rules is None:
            return properties
        return {k: v for k, v in properties.items() if self.may("read", k)}

    def hidden(self, properties: Mapping[str, str]) -> dict[str, str]:
        """The properties the caller may not read."""
        if self._rules is None:
            return {}
        return {k: v for k, v in properties.items() if not self.may("read", k)}


#: The rules of a server without a protection file, and the rights of anyone under them.
UNPROTECTED = PropertyRules()
UNRESTRICTED = PropertyAccess(None, frozenset())
