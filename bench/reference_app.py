"""The yardstick for Botlyne's probes: a bare Litestar app with the same route and body.

No middleware, no dependencies, no lifespan, default settings. Whatever Botlyne costs beyond this
app is the price of its own composition (request-id middleware, DI, exception handlers, logging).
"""

from __future__ import annotations

from litestar import Litestar, get


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[live])
