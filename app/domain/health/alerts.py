"""Incidents: a health check turning `unhealthy`, or a circuit breaker opening, announced once.

An incident opens when a check of the health report becomes `unhealthy` or a breaker opens. It
is logged at CRITICAL (a breaker's opening is already logged so by the resilience manager) and,
when `ALERT_WEBHOOK_URL` is set, posted there once. It resolves when the check is no longer
unhealthy or the breaker closes: logged at INFO and posted as a resolution. A breaker that opens
again after a failed trial call is the same incident, not a new one.

Incidents are kept per process: each process reports what it sees (its own machine's resources,
the breakers it tripped), and the `host` and `incident` fields let a receiver group replicas'
posts. Posts run as tasks, one after another per incident so a resolution never overtakes its
alert, and never block the health check or the breaker that raised them.

The body of a post:

    {"source": "botlyne", "host": "...", "incident": "health:database" | "breaker:gemini",
     "status": "firing" | "resolved", "severity": "critical", "summary": "...",
     "details": {...}, "started_at": "<ISO-8601 UTC>", "resolved_at": "<ISO-8601 UTC>" | null}
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from app.core.resilience import State
from app.gateways.alerts import BREAKER as ALERTS_BREAKER
from app.gateways.alerts import AlertGateway


class Incidents:
    def __init__(self, gateway: AlertGateway) -> None:
        self.gateway = gateway
        self.host = socket.gethostname()
        self._open: dict[str, datetime] = {}
        # The latest post of each incident, which the next one waits for.
        self._latest: dict[str, asyncio.Task[None]] = {}
        self._posts: set[asyncio.Task[None]] = set()

    def open(
        self, key: str, summary: str, details: Mapping[str, Any], *, logged: bool = False
    ) -> None:
        """Open incident `key` unless it is open already. `logged`: the source has already
        logged it at CRITICAL."""
        if key in self._open:
            return
        started = self._open[key] = datetime.now(UTC)
        if not logged:
            logger.bind(component="alerts", event=key).critical(summary)
        self._post(key, "firing", summary, details, started, None)

    def resolve(self, key: str, summary: str, details: Mapping[str, Any]) -> None:
        started = self._open.pop(key, None)
        if started is None:
            return
        logger.bind(component="alerts", event=key).info(summary)
        self._post(key, "resolved", summary, details, started, datetime.now(UTC))

    def breaker_changed(self, name: str, old: State, new: State) -> None:
        """`resilience_manager.on_state_change` subscriber."""
        if name == ALERTS_BREAKER:
            # Its own breaker: there is nowhere to post it, and the manager logged it.
            return
        details = {"breaker": name, "from": old, "to": new}
        if new == "open":
            self.open(f"breaker:{name}", f"circuit breaker {name} opened", details, logged=True)
        elif new == "closed":
            self.resolve(f"breaker:{name}", f"circuit breaker {name} closed", details)

    async def drain(self, grace: float) -> None:
        """Give the posts in flight `grace` seconds, then cancel them (at shutdown)."""
        if not self._posts:
            return
        _, pending = await asyncio.wait(set(self._posts), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _post(
        self,
        key: str,
        status: str,
        summary: str,
        details: Mapping[str, Any],
        started: datetime,
        resolved: datetime | None,
    ) -> None:
        if not self.gateway.configured:
            return
        alert = {
            "source": "botlyne",
            "host": self.host,
            "incident": key,
            "status": status,
            "severity": "critical",
            "summary": summary,
            "details": dict(details),
            "started_at": started.isoformat(),
            "resolved_at": resolved.isoformat() if resolved else None,
        }
        task = asyncio.create_task(self._deliver(self._latest.get(key), alert))
        self._latest[key] = task
        self._posts.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))

    async def _deliver(self, previous: asyncio.Task[None] | None, alert: dict[str, Any]) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await self.gateway.send(alert)

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        self._posts.discard(task)
        if self._latest.get(key) is task:
            del self._latest[key]
