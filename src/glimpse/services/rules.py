"""Glance's default policy rules (new defaults, scope enforced), by Glance's rule names.

One declarative table: rule name → (check string in oslo.policy's language, what it guards).
An operator's policy file overrides any of them by name, exactly as it would Glance's, so
existing Glance overrides carry over. Targets carry `project_id` and `owner` (the image owner),
`visibility`, and `member_id` (the caller's project when it is a member of the image).
"""

from __future__ import annotations

PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
IMAGE_MEMBER = "project_id:%(member_id)s"
OPEN = '"community":%(visibility)s or "public":%(visibility)s or "shared":%(visibility)s'
ADMIN_OR_PROJECT_MEMBER = f"role:admin or ({PROJECT_MEMBER})"
ADMIN_OR_PROJECT_READER = f"role:admin or ({PROJECT_READER})"
ADMIN_OR_READER_OF_VISIBLE = (f"role:admin or (role:reader and (project_id:%(project_id)s or "
                              f"{IMAGE_MEMBER} or {OPEN}))")
ADMIN_OR_MEMBER_OF_VISIBLE = (f"role:admin or (role:member and (project_id:%(project_id)s or "
                              f"{IMAGE_MEMBER} or {OPEN}))")
ADMIN_OR_SHARED_MEMBER = f"role:admin or (role:member and {IMAGE_MEMBER})"
ADMIN_OR_SERVICE = "role:admin or role:service"

RULES: dict[str, tuple[str, str]] = {
    "context_is_admin": ("role:admin", "Who counts as an admin"),
    "default": ("", "Rules an operator file names without a check string"),
    "add_image": (ADMIN_OR_PROJECT_MEMBER, "POST /v2/images (target: the new owner)"),
    "get_image": (ADMIN_OR_READER_OF_VISIBLE, "GET /v2/images/{id}"),
    "get_images": (ADMIN_OR_PROJECT_READER, "GET /v2/images (target: the caller's project)"),
    "modify_image": (ADMIN_OR_PROJECT_MEMBER, "PATCH /v2/images/{id}, tags"),
    "delete_image": (ADMIN_OR_PROJECT_MEMBER, "DELETE /v2/images/{id}"),
    "publicize_image": ("role:admin", "Setting visibility public"),
    "communitize_image": (ADMIN_OR_PROJECT_MEMBER, "Setting visibility community"),
    "upload_image": (ADMIN_OR_PROJECT_MEMBER, "PUT /v2/images/{id}/file"),
    "download_image": (ADMIN_OR_MEMBER_OF_VISIBLE, "GET /v2/images/{id}/file"),
    "deactivate": (ADMIN_OR_PROJECT_MEMBER, "POST /v2/images/{id}/actions/deactivate"),
    "reactivate": (ADMIN_OR_PROJECT_MEMBER, "POST /v2/images/{id}/actions/reactivate"),
    "add_member": (ADMIN_OR_PROJECT_MEMBER, "POST /v2/images/{id}/members"),
    "delete_member": (ADMIN_OR_PROJECT_MEMBER, "DELETE /v2/images/{id}/members/{member}"),
    "get_member": (f"role:admin or (role:reader and (project_id:%(project_id)s or "
                   f"{IMAGE_MEMBER}))", "GET /v2/images/{id}/members/{member}"),
    "get_members": (f"role:admin or (role:reader and (project_id:%(project_id)s or "
                    f"{IMAGE_MEMBER}))", "GET /v2/images/{id}/members"),
    "modify_member": (ADMIN_OR_SHARED_MEMBER, "PUT /v2/images/{id}/members/{member}"),
    "get_image_location": (ADMIN_OR_PROJECT_READER, "Reading an image's locations"),
    "set_image_location": (ADMIN_OR_PROJECT_MEMBER, "Setting an image's locations"),
    "delete_image_location": ("role:admin", "Removing an image's locations"),
    "add_image_location": (f"{ADMIN_OR_SERVICE} or ({PROJECT_MEMBER})",
                           "POST /v2/images/{id}/locations"),
    "fetch_image_location": (ADMIN_OR_SERVICE, "GET /v2/images/{id}/locations"),
    "copy_image": ("role:admin", "Importing an image into more stores"),
    "stores_info_detail": (ADMIN_OR_SERVICE, "GET /v2/info/stores/detail"),
    "manage_image_cache": ("role:admin", "The cache API"),
    "tasks_api_access": ("role:admin", "The tasks API"),
    "get_task": ("rule:default", "GET /v2/tasks/{id}"),
    "get_tasks": ("rule:default", "GET /v2/tasks"),
    "add_task": ("rule:default", "POST /v2/tasks"),
    "modify_task": ("rule:default", "Changing a task"),
}
