"""Agents, queue entries, assignments and performance bodies."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

AgentStatus = Literal["online", "away", "busy", "offline"]
Priority = Literal["low", "normal", "high", "urgent"]
AssignmentType = Literal["auto", "manual", "escalation", "transfer"]
Skill = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Skills = Annotated[list[Skill], msgspec.Meta(max_length=50)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class Shift(msgspec.Struct, forbid_unknown_fields=True):
    """A weekly working window in the agent's time zone; Monday is weekday 0. A shift that
    crosses midnight is written as two shifts (`22:00`-`24:00` and `00:00`-`06:00`)."""

    weekday: Annotated[int, msgspec.Meta(ge=0, le=6)]
    start: str
    end: str

    def __post_init__(self) -> None:
        if not _CLOCK.match(self.start) or not _CLOCK.match(self.end) or self.start == "24:00":
            raise ValueError("start and end are HH:MM (end may be 24:00)")
        if self.end <= self.start:
            raise ValueError("end must be after start; split a shift that crosses midnight")


def _check_timezone(name: str | None) -> None:
    if name is None:
        return
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone: {name!r}") from None


class AgentCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    skills: Skills = msgspec.field(default_factory=list)
    max_concurrent_conversations: Capacity = 5
    shifts: Annotated[list[Shift], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        _check_timezone(self.timezone)


class AgentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    email: Email | None = None
    skills: Skills | None = None
    max_concurrent_conversations: Capacity | None = None
    shifts: Annotated[list[Shift], msgspec.Meta(max_length=100)] | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        _check_timezone(self.timezone)


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: AgentStatus


class AgentOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str
    skills: list[str]
    max_concurrent_conversations: int
    shifts: list[Shift]
    timezone: str
    status: AgentStatus
    status_changed_at: datetime
    active_conversations: int
    last_assigned_at: datetime | None
    created_at: datetime


class AgentList(msgspec.Struct):
    items: list[AgentOut]
    total: int


class QueueRequest(msgspec.Struct, forbid_unknown_fields=True):
    conversation_id: uuid.UUID
    priority: Priority = "normal"
    required_skills: Skills = msgspec.field(default_factory=list)
    reason: Reason | None = None


class QueueEntryOut(msgspec.Struct):
    id: uuid.UUID
    conversation_id: uuid.UUID
    priority: Priority
    required_skills: list[str]
    reason: str | None
    enqueued_at: datetime
    position: int


class QueueList(msgspec.Struct):
    items: list[QueueEntryOut]
    total: int


class AssignRequest(msgspec.Struct, forbid_unknown_fields=True):
    agent_id: uuid.UUID | None = None
    priority: Priority | None = None
    assignment_type: AssignmentType | None = None


class AssignmentOut(msgspec.Struct):
    id: uuid.UUID
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    assignment_type: AssignmentType
    started_at: datetime
    ended_at: datetime | None


class Queued(msgspec.Struct):
    queued: bool
    position: int


class ResponseRequest(msgspec.Struct, forbid_unknown_fields=True):
    agent_id: uuid.UUID
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    message_type: Literal["text"] = "text"


class ResponseOut(msgspec.Struct):
    id: uuid.UUID
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    created_at: datetime
    delivery_status: str | None


class EscalateRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    priority: Priority | None = None
    required_skills: Skills | None = None


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    to_agent_id: uuid.UUID | None = None
    required_skills: Skills | None = None
    note: Reason | None = None

    def __post_init__(self) -> None:
        if (self.to_agent_id is None) == (self.required_skills is None):
            raise ValueError("give exactly one of to_agent_id and required_skills")


class AgentMetrics(msgspec.Struct):
    agent_id: uuid.UUID | None
    since: datetime
    until: datetime
    assigned: int
    active: int
    resolved: int
    first_response_seconds_median: float | None
    first_response_seconds_p90: float | None
    resolution_seconds_median: float | None
    resolution_seconds_p90: float | None


class PerformanceReport(msgspec.Struct):
    since: datetime
    until: datetime
    team: AgentMetrics
    items: list[AgentMetrics]
