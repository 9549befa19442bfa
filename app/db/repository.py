"""The repository base: every read and write of a model goes through one of these.

Repositories of org-owned models scope every query by organization, so a handler cannot forget
to; a row of another organization is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import Base

ModelT = TypeVar("ModelT", bound=Base)


class Repository(Generic[ModelT]):
    model: type[ModelT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, instance: ModelT) -> ModelT:
        self.session.add(instance)
        await self.session.flush()
        await self.session.refresh(instance)
        return instance

    async def get(self, id_: uuid.UUID) -> ModelT | None:
        return await self.session.get(self.model, id_)

    async def one_or_none(self, statement: Select[ModelT]) -> ModelT | None:
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def all(self, statement: Select[ModelT]) -> Sequence[ModelT]:
        return (await self.session.execute(statement)).scalars().all()

    async def update(self, instance: ModelT, values: dict[str, Any]) -> ModelT:
        for key, value in values.items():
            setattr(instance, key, value)
        await self.session.flush()
        await self.session.refresh(instance)
        return instance


class OrgScopedRepository(Repository[ModelT]):
    """For models with an `org_id` column: reads and deletes only see the caller's organization."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        super().__init__(session)
        self.org_id = org_id

    def select(self) -> Select[ModelT]:
        return select(self.model).where(self.model.org_id == self.org_id)  # type: ignore[attr-defined]

    async def get(self, id_: uuid.UUID) -> ModelT | None:
        return await self.one_or_none(self.select().where(self.model.id == id_))  # type: ignore[attr-defined]

    async def count(self) -> int:
        statement = (
            select(func.count())
            .select_from(self.model)
            .where(
                self.model.org_id == self.org_id  # type: ignore[attr-defined]
            )
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def delete(self, id_: uuid.UUID) -> bool:
        statement = delete(self.model).where(
            self.model.id == id_,  # type: ignore[attr-defined]
            self.model.org_id == self.org_id,  # type: ignore[attr-defined]
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]
