"""Image members: `/v2/images/{id}/members` and `/v2/images/{id}/members/{member_id}`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.bodies import json_response, read_json
from glimpse.api.errors import ApiError
from glimpse.api.inputs import image_id
from glimpse.api.routes.images import IMAGE_ID
from glimpse.api.routing import (
    Body,
    Link,
    Operation,
    Param,
    Reply,
    describe,
    ref,
    resource,
    takes_body,
)
from glimpse.api.wiring import context, services
from glimpse.domain.members import Member
from glimpse.services.bounds import check_text
from glimpse.services.views import isotime

MEMBER_ID = Param("member_id", "path", "The member's project id.",
                  {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^/]+$"})
NOT_FOUND = "No image with this id is visible to the caller."
_SHOWN = {"member_id": "$response.body#/member_id", "id": "$response.body#/image_id"}


def member_document(member: Member) -> dict[str, Any]:
    return {
        "member_id": member.member_id,
        "image_id": member.image_id,
        "status": member.status.value,
        "created_at": isotime(member.created_at),
        "updated_at": isotime(member.updated_at),
        "schema": "/v2/schemas/member",
    }


def _member_id(request: Request) -> str:
    return check_text("the member id", request.path_params["member_id"])


async def _object(request: Request) -> dict[str, Any]:
    svc = services(request)
    body = await read_json(request, svc.settings.max_request_body_size, ("application/json",))
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    return body


@describe(Operation(
    "listImageMembers", "List the members of a shared image (a member sees only itself).",
    params=(IMAGE_ID,),
    replies={200: Reply("The members.", ref("members"))},
    errors={403: "The image is not shared, or the caller may not list its members.",
            404: NOT_FOUND},
))
async def index(request: Request) -> Response:
    found = await services(request).members.list(context(request), image_id(request))
    return json_response({"members": [member_document(m) for m in found],
                          "schema": "/v2/schemas/members"})


@takes_body
@describe(Operation(
    "addImageMember", "Offer a shared image to a project (the member starts pending).",
    params=(IMAGE_ID,),
    body=Body({"application/json": {"type": "object", "required": ["member"], "properties": {
        "member": {"type": "string", "minLength": 1, "maxLength": 255}}}}),
    replies={200: Reply("The new member.", ref("member"), links={
        op: Link(op, _SHOWN) for op in ("showImageMember", "updateImageMember",
                                        "deleteImageMember")})},
    errors={400: "The body names no member project.",
            403: "The image is not shared, or the caller does not own it.",
            404: NOT_FOUND, 409: "The project is a member already.",
            413: "The image has the most members allowed.",
            415: "The body is not `application/json`."},
))
async def add(request: Request) -> Response:
    body = await _object(request)
    member = await services(request).members.add(context(request), image_id(request),
                                                 body.get("member"))
    return json_response(member_document(member))


@describe(Operation(
    "showImageMember", "Show one membership.", params=(IMAGE_ID, MEMBER_ID),
    replies={200: Reply("The member.", ref("member"))},
    errors={403: "The caller may not show members of this image.",
            404: "No such image visible to the caller, or no such member."},
))
async def show(request: Request) -> Response:
    member = await services(request).members.get(context(request), image_id(request),
                                                 _member_id(request))
    return json_response(member_document(member))


@takes_body
@describe(Operation(
    "updateImageMember", "Accept, reject or reset a membership (the member itself only).",
    params=(IMAGE_ID, MEMBER_ID),
    body=Body({"application/json": {"type": "object", "required": ["status"], "properties": {
        "status": {"enum": ["pending", "accepted", "rejected"]}}}}),
    replies={200: Reply("The member.", ref("member"))},
    errors={400: "The status is not pending, accepted or rejected.",
            403: "Only the member itself (or an admin) may set its status.",
            404: "No such image visible to the caller, or no such member.",
            415: "The body is not `application/json`."},
))
async def update(request: Request) -> Response:
    body = await _object(request)
    member = await services(request).members.set_status(
        context(request), image_id(request), _member_id(request), body.get("status"))
    return json_response(member_document(member))


@describe(Operation(
    "deleteImageMember", "Withdraw an image from a project.", params=(IMAGE_ID, MEMBER_ID),
    replies={204: Reply("Removed.")},
    errors={403: "Only the owner (or an admin) may remove members.",
            404: "No such image visible to the caller, or no such member."},
))
async def delete(request: Request) -> Response:
    await services(request).members.remove(context(request), image_id(request),
                                           _member_id(request))
    return Response(status_code=204)


routes = [
    resource("/v2/images/{id}/members", get=index, post=add),
    resource("/v2/images/{id}/members/{member_id}", get=show, put=update, delete=delete),
]
