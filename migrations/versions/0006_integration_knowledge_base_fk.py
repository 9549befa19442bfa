"""Integrations reference their knowledge base with a foreign key that also pins the organization.

`integrations.knowledge_base_id` had only the service's check. The key is (knowledge_base_id,
org_id) → knowledge_bases (id, org_id), so the database itself refuses a knowledge base of another
organization. Deleting a knowledge base sets only `knowledge_base_id` to null (PostgreSQL 15's
column list): the integration then answers from its organization's default knowledge base, as
one that never named any.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Without a key, a reference may have outlived its knowledge base: such an integration
    # already answered as one without a knowledge base (no answer), now from the default.
    op.execute(
        """
        UPDATE integrations AS i SET knowledge_base_id = NULL
        WHERE i.knowledge_base_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM knowledge_bases AS kb
            WHERE kb.id = i.knowledge_base_id AND kb.org_id = i.org_id
        )
        """
    )
    op.create_unique_constraint(op.f("uq_knowledge_bases_id"), "knowledge_bases", ["id", "org_id"])
    op.create_foreign_key(
        op.f("fk_integrations_knowledge_base_id_knowledge_bases"),
        "integrations",
        "knowledge_bases",
        ["knowledge_base_id", "org_id"],
        ["id", "org_id"],
        ondelete="SET NULL (knowledge_base_id)",
    )
    op.create_index(
        op.f("ix_integrations_knowledge_base_id"), "integrations", ["knowledge_base_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_integrations_knowledge_base_id"), table_name="integrations")
    op.drop_constraint(
        op.f("fk_integrations_knowledge_base_id_knowledge_bases"),
        "integrations",
        type_="foreignkey",
    )
    op.drop_constraint(op.f("uq_knowledge_bases_id"), "knowledge_bases", type_="unique")
