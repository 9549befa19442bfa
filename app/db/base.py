"""Declarative base shared by every model; naming conventions keep Alembic's names stable."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, MetaData, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class IdMixin:
    # gen_random_uuid() is built in since PostgreSQL 13; the database assigns ids so rows written
    # by SQL functions and by the ORM look the same.
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


_PLAIN_VALUE = re.compile(r"[a-z_]+")


def one_of_expression(column: str, *values: str) -> str:
    """The CHECK expression "`column` holds one of `values`" (NULL passes, as in any CHECK),
    as a comparison with one array literal.

    PostgreSQL reads and plans a table's CHECK expressions again in every statement that
    writes the table. Written `column IN (...)`, the expression is stored as an array built by
    casting each value, which every statement rebuilds: on the webhook's accepted delivery (four
    tables written) that was a tenth of the database's time."""
    assert values
    assert all(_PLAIN_VALUE.fullmatch(value) for value in values)
    return f"{column}::text = ANY ('{{{','.join(values)}}}'::text[])"


def one_of(column: str, *values: str, name: str | None = None) -> CheckConstraint:
    """A CHECK constraint that `column` holds one of `values` (named after the column)."""
    return CheckConstraint(one_of_expression(column, *values), name=name or column)
