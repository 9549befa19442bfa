"""HTTP for the caller's organization and its API keys."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, JSONBody

from app.core.db import DbSession
from app.domain.orgs.auth import Caller
from app.domain.orgs.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    OrganizationOut,
    OrganizationUpdate,
)
from app.domain.orgs.service import ApiKeyService, OrganizationService


class OrganizationController(Controller):
    path = "/organization"
    tags = ["organization"]

    @get("/", summary="The caller's organization")
    async def get_organization(self, db_session: DbSession, principal: Caller) -> OrganizationOut:
        org = await OrganizationService(db_session, principal).current()
        return msgspec.convert(org, OrganizationOut, from_attributes=True)

    @patch("/", summary="Rename the caller's organization (admin)")
    async def update_organization(
        self, db_session: DbSession, principal: Caller, data: JSONBody[OrganizationUpdate]
    ) -> OrganizationOut:
        org = await OrganizationService(db_session, principal).rename(data.name)
        return msgspec.convert(org, OrganizationOut, from_attributes=True)


class ApiKeyController(Controller):
    path = "/api-keys"
    tags = ["api-keys"]

    @post("/", summary="Create an API key (admin); the key is in this response only")
    async def create_api_key(
        self, db_session: DbSession, principal: Caller, data: JSONBody[ApiKeyCreate]
    ) -> ApiKeyCreated:
        if (data.role == "agent") != (data.agent_id is not None):
            raise ValidationException(
                "An agent key needs agent_id; an admin key must not have one",
                extra=[{"key": "agent_id", "message": "required exactly for role agent"}],
            )
        row, key = await ApiKeyService(db_session, principal).create(
            data.name, data.role, data.agent_id
        )
        out = msgspec.convert(row, ApiKeyOut, from_attributes=True)
        return ApiKeyCreated(**msgspec.structs.asdict(out), api_key=key)

    @get("/", summary="List the organization's active API keys (admin)")
    async def list_api_keys(self, db_session: DbSession, principal: Caller) -> ApiKeyList:
        rows = await ApiKeyService(db_session, principal).list()
        items = [msgspec.convert(row, ApiKeyOut, from_attributes=True) for row in rows]
        return ApiKeyList(items=items, total=len(items))

    @delete("/{key_id:uuid}", summary="Revoke an API key (admin)")
    async def revoke_api_key(
        self, db_session: DbSession, principal: Caller, key_id: FromPath[uuid.UUID]
    ) -> None:
        await ApiKeyService(db_session, principal).revoke(key_id)
