"""Every model module, imported so `Base.metadata` is complete for Alembic and the app."""

from app.db.models.agents import AgentAssignment, AgentQueueEntry, AgentResponse, SupportAgent
from app.db.models.audit import AuditLog
from app.db.models.conversations import Conversation, Message
from app.db.models.integrations import Integration, IntegrationConfig, IntegrationEvent
from app.db.models.jobs import Job
from app.db.models.knowledge import Document, DocumentChunk, KnowledgeBase, KnowledgeBaseTerm
from app.db.models.orgs import ApiKey, Organization

__all__ = [
    "AgentAssignment",
    "AgentQueueEntry",
    "AgentResponse",
    "ApiKey",
    "AuditLog",
    "Conversation",
    "Document",
    "DocumentChunk",
    "Integration",
    "IntegrationConfig",
    "IntegrationEvent",
    "Job",
    "KnowledgeBase",
    "KnowledgeBaseTerm",
    "Message",
    "Organization",
    "SupportAgent",
]
