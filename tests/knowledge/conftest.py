"""Fixtures of the knowledge tests: an app wired to the Gemini stub, and small helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import stamina
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.core.resilience import resilience_manager
from tests.conftest import make_settings
from tests.stubs import GeminiStub

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="session")
def gemini_server() -> Iterator[GeminiStub]:
    with GeminiStub() as stub:
        yield stub


@pytest.fixture
async def gemini(gemini_server: GeminiStub) -> AsyncIterator[GeminiStub]:
    """The stub, reset, with a closed breaker and retries that do not sleep."""
    gemini_server.reset()
    if not gemini_server.running:
        gemini_server.start()
    await resilience_manager.reset()
    with stamina.set_testing(True, attempts=2):
        yield gemini_server
    await resilience_manager.reset()


@pytest.fixture
async def gemini_client(
    database_url: str, gemini: GeminiStub, clean_db: AsyncEngine
) -> AsyncIterator[Client]:
    settings = make_settings(
        database_url,
        google_api_key=gemini.api_key,
        google_api_base_url=gemini.base_url,
        run_workers=False,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def create_kb(client: Client, headers: dict[str, str], name: str = "help") -> str:
    response = await client.post("/api/v1/knowledge-bases", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def upload(
    client: Client,
    headers: dict[str, str],
    kb_id: str,
    filename: str,
    content: bytes,
    media_type: str = "application/octet-stream",
    **form: str,
) -> Any:
    return await client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (filename, content, media_type)},
        data=form,
        headers=headers,
    )


def _pdf_escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_with_text(*lines: str) -> bytes:
    """A valid one-page PDF whose text layer holds `lines` (Helvetica, WinAnsi)."""
    text = " ".join(f"({_pdf_escape(line)}) Tj T*" for line in lines)
    stream = f"BT /F1 11 Tf 14 TL 72 760 Td {text} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
