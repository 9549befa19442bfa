"""Every model module, imported so `Base.metadata` is complete for Alembic and the app."""

from app.db.models.audit import AuditLog
from app.db.models.conversations import Conversation, Message
from app.db.models.integrations import Integration, IntegrationConfig, IntegrationEvent
from app.db.models.orgs import ApiKey, Organization

__all__ = [
    "ApiKey",
    "AuditLog",
    "Conversation",
    "Integration",
    "IntegrationConfig",
    "IntegrationEvent",
    "Message",
    "Organization",
]
