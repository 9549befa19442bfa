"""The cyclic garbage collector while the application serves, and after it stops."""

from __future__ import annotations

import gc

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import GC_YOUNG_THRESHOLD


async def test_serving_freezes_start_up_and_spaces_out_passes(
    app: Litestar, clean_db: AsyncEngine
) -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    async with AsyncTestClient(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
