"""Property protections without I/O: the rule file parser, the matcher, one caller's rights, and
the editable copy a patch works on (hidden properties neither readable nor clobbered)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from glimpse import config
from glimpse.domain.context import RequestContext
from glimpse.domain.errors import Conflict, Forbidden
from glimpse.domain.images import Image
from glimpse.services import patch
from glimpse.services.patch import V20, V21, Change
from glimpse.services.protections import (
    UNPROTECTED,
    PropertyRules,
    ProtectionFileError,
    parse_rules,
)
from glimpse.services.views import BASE_KEYS, editable_copy, image_document

#: The patterns of Glance's own test file (glance/tests/etc/property-protections.conf).
RULES = (Path(__file__).parents[1] / "protections.conf").read_text()


def rules(text: str = RULES) -> PropertyRules:
    return PropertyRules(parse_rules(text))


def ctx(*roles: str, service: tuple[str, ...] = ()) -> RequestContext:
    return RequestContext(project_id="p", roles=frozenset(roles),
                          service_roles=frozenset(service))


# -- the matcher ------------------------------------------------------------------------------


def test_first_matching_section_in_file_order_wins() -> None:
    found = rules()
    owner = found.rule_for("x_owner_foo")
    assert owner is not None and owner.section == "^x_owner_.*"
    catch_all = found.rule_for("anything_else")
    assert catch_all is not None and catch_all.section == ".*"
    assert found.allows("create", "x_owner_foo", frozenset({"member"}))
    assert not found.allows("create", "anything_else", frozenset({"member"}))
    assert found.allows("create", "anything_else", frozenset({"admin"}))


def test_sections_are_searched_not_anchored() -> None:
    # As Glance (`re.search`): `[x_none_read]` also covers names that contain it.
    rule = rules().rule_for("my_x_none_read_2")
    assert rule is not None and rule.section == "x_none_read"
    anchored = rules().rule_for("not_x_owner_foo")  # `^x_owner_` must start the name
    assert anchored is not None and anchored.section == ".*"


def test_anyone_and_nobody() -> None:
    found = rules()
    for operation in ("create", "read", "update", "delete"):
        assert found.allows(operation, "x_all_permitted_1", frozenset())
        assert found.allows(operation, "x_all_permitted_1", frozenset({"joe_soap"}))
        assert not found.allows(operation, "x_none_permitted_1", frozenset({"admin"}))
    assert found.allows("create", "x_none_read", frozenset({"member"}))
    assert not found.allows("read", "x_none_read", frozenset({"admin"}))


def test_a_property_no_section_matches_is_denied() -> None:
    found = rules("[^x_owner_.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n")
    assert found.allows("read", "x_owner_a", frozenset())
    for operation in ("create", "read", "update", "delete"):
        assert not found.allows(operation, "os_distro", frozenset({"admin"}))


def test_roles_and_keys_are_case_insensitive_and_empty_lets_nobody() -> None:
    found = rules()
    assert found.allows("create", "x_case_insensitive", frozenset({"member"}))
    assert found.allows("read", "x_case_insensitive", frozenset({"member"}))
    assert not found.allows("delete", "x_case_insensitive", frozenset({"admin"}))


def test_a_file_without_sections_protects_nothing() -> None:
    found = rules("# nothing here\n")
    assert not found.enabled
    assert found.access(ctx()).unrestricted
    assert UNPROTECTED.access(ctx()).may("delete", "anything")


# -- one caller's rights ----------------------------------------------------------------------


def test_implied_and_service_roles_count() -> None:
    found = rules()
    # admin implies member (and reader), as Keystone's default implied roles.
    assert found.access(ctx("admin")).may("update", "x_owner_a")
    assert not found.access(ctx("reader")).may("update", "x_owner_a")
    assert found.access(ctx("reader", service=("member",))).may("update", "x_owner_a")
    assert found.access(ctx("spl_role")).may("read", "spl_read_only_prop")
    assert not found.access(ctx("spl_role")).may("create", "spl_read_only_prop")


def test_access_is_shared_per_role_set() -> None:
    found = rules()
    assert found.access(ctx("member", "x")) is found.access(ctx("x", "member"))
    assert found.access(ctx("member")) is not found.access(ctx("admin"))


def test_check_names_the_property_and_the_operation() -> None:
    with pytest.raises(Forbidden, match=r"'x_owner_a'.*create"):
        rules().access(ctx("reader")).check("create", "x_owner_a")


# -- broken files -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("[x(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n",
     r"section \[x\(\] is not a valid regular expression"),
    ("[a]\ncreate = @\nread = @\nupdate = @\n", r"section \[a\]: missing 'delete'"),
    ("[a]\ncreate = @\nread = @\nupdate = @\ndelete = @\nremove = @\n",
     r"section \[a\]: unknown key 'remove'"),
    ("[a]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n",
     r"section \[a\]: create = @,!: '@' and '!' are mutually exclusive"),
    ("[a]\ncreate = @\nread = @\nupdate = @\ndelete = @\n[a]\ncreate = @\n",
     "section 'a' already exists"),
    ("create = @\n", "no section headers"),
    ("[a]\ncreate = @\ncreate = !\n", "option 'create' in section 'a' already exists"),
])
def test_broken_files_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ProtectionFileError, match=message):
        parse_rules(text, "rules.conf")


def test_percent_is_no_interpolation() -> None:
    found = rules("[^100%_x]\ncreate = %admin\nread = @\nupdate = @\ndelete = @\n")
    assert found.allows("create", "100%_x", frozenset({"%admin"}))


def test_start_up_refuses_a_broken_file_or_the_policies_format(tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text("[x(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n")
    with pytest.raises(config.ConfigError,
                       match=r"^property_protection_file: .*broken.conf: section \[x\(\]"):
        config.load(environ={"GLIMPSE_PROPERTY_PROTECTION_FILE": str(broken)})
    with pytest.raises(config.ConfigError, match=r"^property_protection_file: cannot read"):
        config.load(environ={"GLIMPSE_PROPERTY_PROTECTION_FILE": str(tmp_path / "none")})
    with pytest.raises(config.ConfigError,
                       match=r"^property_protection_rule_format: 'policies' is not supported"):
        config.load(environ={"GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT": "policies"})
    with pytest.raises(config.ConfigError, match=r"^property_protection_rule_format: unknown"):
        config.load(environ={"GLIMPSE_PROPERTY_PROTECTION_RULE_FORMAT": "role"})
    good = tmp_path / "good.conf"
    good.write_text(RULES)
    settings = config.load(environ={"GLIMPSE_PROPERTY_PROTECTION_FILE": str(good)})
    assert settings.property_protection_file == str(good)


# -- views and patches ------------------------------------------------------------------------


def image(**properties: str) -> Image:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    found = Image(id="6d1a2b7e-0c1f-4d2e-9a7b-3c4d5e6f7a8b", owner="p", created_at=now,
                  updated_at=now)
    found.properties = dict(properties)
    return found


def test_the_client_view_leaves_out_what_the_caller_may_not_read() -> None:
    found = image(x_owner_a="1", x_none_read="secret", os_distro="admin-only")
    member = image_document(found, rules().access(ctx("member")))
    assert member["x_owner_a"] == "1"
    assert "x_none_read" not in member and "os_distro" not in member
    assert member["name"] is None and member["owner"] == "p"  # base attributes always shown
    admin = image_document(found, rules().access(ctx("admin")))
    assert admin["os_distro"] == "admin-only" and "x_none_read" not in admin
    assert image_document(found)["x_none_read"] == "secret"  # no protections: everything


def run(found: Image, roles: tuple[str, ...], *changes: Change) -> dict[str, str]:
    """The properties `found` would be stored with after `changes` by a caller with `roles`."""
    editable = editable_copy(found, rules().access(ctx(*roles)))
    for change in changes:
        patch.apply(editable.document, change, editable.guard)
    shown = {k: v for k, v in editable.document.items() if k not in BASE_KEYS}
    return {**shown, **editable.hidden}


def test_patch_operations_check_create_update_delete() -> None:
    found = image(x_owner_a="1", x_none_update="2", x_case_insensitive="4")
    assert run(found, ("member",), Change("add", "/x_owner_b", "3", False))["x_owner_b"] == "3"
    with pytest.raises(Forbidden, match=r"'os_new'.*create"):
        run(found, ("member",), Change("add", "/os_new", "3", False))
    with pytest.raises(Forbidden, match=r"'x_none_update'.*update"):
        run(found, ("member",), Change("replace", "/x_none_update", "3", False))
    with pytest.raises(Forbidden, match=r"'x_none_update'.*update"):
        # An add of a present property is an update, as in Glance.
        run(found, ("member",), Change("add", "/x_none_update", "3", False))
    with pytest.raises(Forbidden, match=r"'x_case_insensitive'.*delete"):
        run(found, ("member",), Change("remove", "/x_case_insensitive", None, False))
    # Not readable, so absent: a 409, as Glance answers.
    with pytest.raises(Conflict, match="x_owner_a does not exist"):
        run(found, ("reader",), Change("remove", "/x_owner_a", None, False))
    assert "x_none_update" not in run(found, ("member",),
                                      Change("remove", "/x_none_update", None, False))


def test_unreadable_properties_are_absent_to_a_patch_and_kept() -> None:
    found = image(x_owner_a="1", os_secret="s", x_none_read="r")
    for op in ("replace", "remove"):
        with pytest.raises(Conflict, match="os_secret does not exist"):
            run(found, ("member",), Change(op, "/os_secret", "x", False))  # type: ignore[arg-type]
    for media in (V21, V20):
        # Adding one would overwrite a value the caller cannot see.
        with pytest.raises(Forbidden, match=r"'x_none_read'.*update"):
            run(found, ("member",), Change("add", "/x_none_read", "x", media == V20))
    kept = run(found, ("member",), Change("replace", "/x_owner_a", "2", False))
    assert kept == {"x_owner_a": "2", "os_secret": "s", "x_none_read": "r"}
