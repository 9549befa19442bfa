"""Knowledge bases and documents: uploads in every format, rejections, replacement, deletion."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from tests.conftest import make_settings
from tests.knowledge.conftest import Client, create_kb, pdf_with_text, upload

HTML = b"""<!doctype html><html><head><title>ignored</title><style>p {color: red}</style>
<script>var secret = "do-not-index";</script></head><body>
<h1>Pets on board</h1><p>Small dogs travel in a carrier &amp; pay CLP 5.000.</p>
<ul><li>Cats: carrier required</li><li>Birds: not accepted</li></ul></body></html>"""


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(text(sql), params)).all())


async def _search(client: Client, headers: dict[str, str], kb_id: str, q: str) -> list[Any]:
    response = await client.get(
        f"/api/v1/knowledge-bases/{kb_id}/search", params={"q": q}, headers=headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_knowledge_bases_are_created_and_listed(
    client: Client, admin_headers: dict[str, str]
) -> None:
    first = await create_kb(client, admin_headers, "help center")
    await create_kb(client, admin_headers, "internal")
    duplicate = await client.post(
        "/api/v1/knowledge-bases", json={"name": "help center"}, headers=admin_headers
    )
    assert duplicate.status_code == 409

    listed = (await client.get("/api/v1/knowledge-bases", headers=admin_headers)).json()
    assert [kb["name"] for kb in listed["items"]] == ["help center", "internal"]
    assert listed["total"] == 2
    one = await client.get(f"/api/v1/knowledge-bases/{first}", headers=admin_headers)
    assert one.json()["chunk_count"] == 0


async def test_json_html_and_text_documents(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    kb_id = await create_kb(client, admin_headers)
    created = await client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        json={"title": "Pets", "content": HTML.decode(), "content_type": "text/html"},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    document = created.json()
    assert (document["version"], document["language"]) == (1, "en")

    detail = await client.get(
        f"/api/v1/knowledge-bases/{kb_id}/documents/{document['id']}", headers=admin_headers
    )
    content = detail.json()["content"]
    assert "Small dogs travel in a carrier & pay CLP 5.000." in content
    assert "- Cats: carrier required" in content
    assert "do-not-index" not in content and "color" not in content

    plain = await upload(
        client, admin_headers, kb_id, "notes.txt", "Horário\n\nAbrimos às 9h.".encode()
    )
    assert (plain.status_code, plain.json()["title"]) == (201, "notes")
    # Accents and case are folded: "horario" finds "Horário".
    assert [hit["title"] for hit in await _search(client, admin_headers, kb_id, "HORARIO")] == [
        "notes"
    ]
    assert await _search(client, admin_headers, kb_id, "do-not-index") == []

    listed = (
        await client.get(
            f"/api/v1/knowledge-bases/{kb_id}/documents",
            params={"limit": 1},
            headers=admin_headers,
        )
    ).json()
    assert (listed["total"], len(listed["items"]), listed["items"][0]["title"]) == (2, 1, "Pets")


async def test_bad_uploads_are_client_errors(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    kb_id = await create_kb(client, admin_headers)
    url = f"/api/v1/knowledge-bases/{kb_id}/documents"
    cases = [
        (await upload(client, admin_headers, kb_id, "report.docx", b"PK\x03\x04..."), 415),
        (await upload(client, admin_headers, kb_id, "empty.txt", b""), 422),
        (await upload(client, admin_headers, kb_id, "blank.md", b" \n\n "), 422),
        (await upload(client, admin_headers, kb_id, "broken.pdf", b"%PDF-1.4\n1 0 obj <<"), 422),
        (await upload(client, admin_headers, kb_id, "fake.pdf", b"not a pdf at all"), 422),
        (await upload(client, admin_headers, kb_id, "image.pdf", pdf_with_text()), 422),
        (await upload(client, admin_headers, kb_id, "bin.txt", b"\x00\x01\x02binary"), 422),
        (await client.post(url, files={"other": ("a.txt", b"x")}, headers=admin_headers), 422),
        (await client.post(url, content=b"title=x", headers=admin_headers), 415),
        (await client.post(url, json={"title": "x"}, headers=admin_headers), 422),
        (await client.post(url, json={"title": " ", "content": "x"}, headers=admin_headers), 422),
        (
            await client.post(
                url,
                json={"title": "x", "content": "y", "content_type": "app/pdf"},
                headers=admin_headers,
            ),
            422,
        ),
        (
            await client.post(
                url,
                content=b'{"title": ',
                headers={**admin_headers, "Content-Type": "application/json"},
            ),
            400,
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) >= {"status_code", "detail"}
    assert (
        cases[0][0].json()["detail"] == "Unsupported document type: send .txt, .md, .html or .pdf"
    )

    unknown = await upload(
        client, admin_headers, "00000000-0000-0000-0000-000000000000", "a.txt", b"hello"
    )
    assert unknown.status_code == 404
    documents = await _rows(clean_db, "SELECT count(*) FROM documents")
    assert documents == [(0,)]


async def test_size_limit_is_413(
    database_url: str, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    settings = make_settings(database_url, document_max_bytes=1000, run_workers=False)
    async with AsyncTestClient(app=create_app(settings)) as client:
        kb_id = await create_kb(client, admin_headers)
        large = await upload(client, admin_headers, kb_id, "big.txt", b"word " * 300)
        large_json = await client.post(
            f"/api/v1/knowledge-bases/{kb_id}/documents",
            json={"title": "big", "content": "word " * 300},
            headers=admin_headers,
        )
        fits = await upload(client, admin_headers, kb_id, "small.txt", b"word " * 100)
    assert (large.status_code, large_json.status_code, fits.status_code) == (413, 413, 201)
    assert large.json()["detail"] == "The document is larger than the limit of 1000 bytes"


async def test_reupload_replaces_chunks_and_statistics(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    kb_id = await create_kb(client, admin_headers)
    first = await upload(
        client, admin_headers, kb_id, "faq.md", b"# FAQ\n\nThe wombat plan costs 10 euros."
    )
    again = await upload(
        client, admin_headers, kb_id, "faq.md", b"# FAQ\n\nThe koala plan costs 12 euros."
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["version"] == 2
    assert await _search(client, admin_headers, kb_id, "wombat") == []
    assert [hit["title"] for hit in await _search(client, admin_headers, kb_id, "koala")] == ["faq"]
    terms = dict(
        await _rows(
            clean_db, "SELECT term, df FROM knowledge_base_terms WHERE term IN ('wombat', 'koala')"
        )
    )
    assert terms == {"koala": 1}
    (stats,) = await _rows(
        clean_db,
        "SELECT kb.chunk_count, kb.token_count, (SELECT sum(token_count) FROM document_chunks)"
        " FROM knowledge_bases AS kb",
    )
    assert stats[0] == 1 and stats[1] == stats[2]
    # Replacing is audited as an update of the document; chunk text stays out of the audit.
    audit = await _rows(
        clean_db,
        "SELECT operation, coalesce(new_values, old_values, '{}')::text FROM audit_logs"
        " WHERE table_name IN ('documents', 'document_chunks') ORDER BY id",
    )
    assert [operation for operation, _ in audit].count("UPDATE") == 1
    assert not any("koala" in values or "wombat" in values for _, values in audit)


async def test_delete_removes_the_document_and_its_chunks(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    kb_id = await create_kb(client, admin_headers)
    doc = (await upload(client, admin_headers, kb_id, "a.txt", b"Platypus care guide.")).json()
    await upload(client, admin_headers, kb_id, "b.txt", b"Echidna care guide.")
    url = f"/api/v1/knowledge-bases/{kb_id}/documents/{doc['id']}"

    assert (await client.delete(url, headers=admin_headers)).status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404
    assert (await client.delete(url, headers=admin_headers)).status_code == 404
    assert await _search(client, admin_headers, kb_id, "platypus") == []
    assert await _rows(
        clean_db, "SELECT count(*) FROM document_chunks WHERE document_id = :id", id=doc["id"]
    ) == [(0,)]
    assert await _rows(clean_db, "SELECT df FROM knowledge_base_terms WHERE term = 'guide'") == [
        (1,)
    ]
    assert await _rows(clean_db, "SELECT chunk_count FROM knowledge_bases") == [(1,)]
