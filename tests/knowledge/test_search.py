"""GET /knowledge-bases/{id}/search: ranking, per-method scores, and organization isolation."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.core.db import create_sessionmaker
from app.db.models import Conversation, Integration
from app.db.models.knowledge import KnowledgeBase
from app.domain.knowledge import ranking
from app.domain.knowledge.repository import ChunkRepository
from app.domain.knowledge.service import KnowledgeSearch
from app.domain.orgs.service import create_organization
from app.gateways.gemini import GeminiGateway
from tests.knowledge.conftest import Client, create_kb, upload
from tests.stubs import GeminiStub

DOCS = {
    "errors.md": b"# API errors\n\n## E1042\n\nE1042 means the idempotency key was reused.\n\n"
    b"## E1310\n\nE1310 means the payment has not settled yet.",
    "terminals.md": b"# Terminals\n\nThe NP-410 costs 199 euros. The NP-200 costs 99 euros.",
    "reembolsos.md": "# Reembolsos\n\nO reembolso no cartão leva até 10 dias úteis.".encode(),
}


async def _load(client: Client, headers: dict[str, str]) -> str:
    kb_id = await create_kb(client, headers)
    for name, content in DOCS.items():
        assert (await upload(client, headers, kb_id, name, content)).status_code == 201
    return kb_id


async def test_search_ranks_codes_and_reports_each_score(
    gemini_client: Client, admin_headers: dict[str, str], gemini: GeminiStub
) -> None:
    kb_id = await _load(gemini_client, admin_headers)

    response = await gemini_client.get(
        f"/api/v1/knowledge-bases/{kb_id}/search",
        params={"q": "What does error E1310 mean?", "top_k": 2},
        headers=admin_headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dense"] is True
    assert "e1310" in body["terms"]
    best = body["items"][0]
    assert (best["title"], best["heading"]) == ("errors", "API errors > E1042")
    assert "E1310 means the payment has not settled yet." in best["snippet"]
    assert best["scores"]["bm25"] > 0
    assert -1 <= best["scores"]["dense"] <= 1
    assert best["score"] == best["scores"]["fused"]
    assert len(body["items"]) <= 2


async def test_search_folds_accents_stems_and_keeps_codes(
    client: Client, admin_headers: dict[str, str]
) -> None:
    kb_id = await _load(client, admin_headers)

    async def titles(q: str) -> list[str]:
        response = await client.get(
            f"/api/v1/knowledge-bases/{kb_id}/search", params={"q": q}, headers=admin_headers
        )
        body = response.json()
        assert body["dense"] is False
        assert all(item["scores"]["dense"] is None for item in body["items"])
        return [item["title"] for item in body["items"]]

    assert (await titles("reembolsos no cartao"))[0] == "reembolsos"
    assert (await titles("how much is the np-410"))[0] == "terminals"
    assert await titles("NP-300") == ["terminals"]  # shares "np", but ranks nothing new
    assert await titles("zebra") == []
    # A typo inside the first letters still finds its word, through the nearest known term.
    assert await titles("rembolso") == ["reembolsos"]
    bad = await client.get(
        f"/api/v1/knowledge-bases/{kb_id}/search",
        params={"q": "x", "top_k": 51},
        headers=admin_headers,
    )
    assert bad.status_code == 422


def test_codes_weigh_more_and_stand_ins_for_unknown_words_less() -> None:
    dfs = {"e1310": 3, "settle": 3}
    corrected = ranking.corrections(["setled", "qwxzv"], dfs)
    weights = ranking.scoring_weights({"e1310": 3}, corrected, dfs, chunks=100)

    assert corrected == {"setled": "settle"}
    assert "setled" in ranking.near_misses("settled")
    assert weights["e1310"] == ranking.CODE_WEIGHT * ranking.idf(3, 100)
    assert weights["settle"] == ranking.TYPO_WEIGHT * ranking.idf(3, 100)
    assert ranking.near_misses("card") == set()  # too short to guess at


async def test_organizations_never_see_each_others_knowledge(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    kb_id = await _load(client, admin_headers)
    async with create_sessionmaker(clean_db).begin() as session:
        other_org, other_key = await create_organization(session, "other")
        integration = Integration(org_id=other_org.id, name="site", type="generic")
        session.add(integration)
        await session.flush()
        conversation = Conversation(
            org_id=other_org.id,
            integration_id=integration.id,
            thread_key="thread",
            contact_external_id="user-1",
        )
        session.add(conversation)
    other = {"Authorization": f"Bearer {other_key}"}
    own_kb = await create_kb(client, other, "theirs")

    for method, url in (
        ("GET", f"/api/v1/knowledge-bases/{kb_id}"),
        ("GET", f"/api/v1/knowledge-bases/{kb_id}/documents"),
        ("GET", f"/api/v1/knowledge-bases/{kb_id}/search?q=E1042"),
        ("POST", f"/api/v1/knowledge-bases/{kb_id}/documents"),
    ):
        response = await client.request(
            method, url, headers=other, files={"file": ("x.txt", b"hijack")}
        )
        assert response.status_code == 404, (method, url)
    document_id = (
        await client.get(f"/api/v1/knowledge-bases/{kb_id}/documents", headers=admin_headers)
    ).json()["items"][0]["id"]
    for kb in (kb_id, own_kb):
        url = f"/api/v1/knowledge-bases/{kb}/documents/{document_id}"
        assert (await client.get(url, headers=other)).status_code == 404
        assert (await client.delete(url, headers=other)).status_code == 404

    asked = await client.post(
        "/api/v1/query", json={"question": "E1042", "knowledge_base_id": kb_id}, headers=other
    )
    assert asked.status_code == 404
    theirs = {"question": "E1042", "conversation_id": str(conversation.id)}
    assert (
        await client.post("/api/v1/query", json=theirs, headers=admin_headers)
    ).status_code == 404
    assert (await client.post("/api/v1/query", json=theirs, headers=other)).status_code == 200
    own = await client.post("/api/v1/query", json={"question": "E1042"}, headers=other)
    assert (own.json()["mode"], own.json()["sources"]) == ("no_answer", [])
    listed = (await client.get("/api/v1/knowledge-bases", headers=other)).json()
    assert [kb["name"] for kb in listed["items"]] == ["theirs"]


async def test_retrieval_filters_chunks_by_organization_below_the_knowledge_base_lookup(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    """The bot worker hands `KnowledgeSearch` an id from an integration row: even given another
    organization's knowledge base itself, retrieval finds none of its chunks."""
    kb_id = uuid.UUID(await _load(client, admin_headers))
    sessions = create_sessionmaker(clean_db)
    async with sessions.begin() as session:
        other_org, _ = await create_organization(session, "other")
    async with sessions() as session:
        kb = await session.get_one(KnowledgeBase, kb_id)
        own = await KnowledgeSearch(session, kb.org_id, GeminiGateway(Settings())).retrieve(
            kb, "What does E1310 mean?", 5
        )
        theirs = KnowledgeSearch(session, other_org.id, GeminiGateway(Settings()))
        stolen = await theirs.retrieve(kb, "What does E1310 mean?", 5)
        chunk_ids = [result.passage.chunk_id for result in own.results]
        other_chunks = ChunkRepository(session, other_org.id)

        assert own.results
        assert stolen.results == [] and stolen.ranked == []
        assert await other_chunks.passages(chunk_ids) == {}
        assert await other_chunks.embeddings(chunk_ids) == {}


async def test_integrations_reference_only_their_own_organizations_knowledge_base(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    kb_id = uuid.UUID(await create_kb(client, admin_headers))
    sessions = create_sessionmaker(clean_db)
    async with sessions.begin() as session:
        kb = await session.get_one(KnowledgeBase, kb_id)
        other_org, _ = await create_organization(session, "other")
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(
                Integration(org_id=other_org.id, name="x", type="generic", knowledge_base_id=kb_id)
            )
    async with sessions.begin() as session:
        own = Integration(org_id=kb.org_id, name="site", type="generic", knowledge_base_id=kb_id)
        session.add(own)

    # Deleting the knowledge base leaves the integration, answering from the default one.
    async with sessions.begin() as session:
        await session.execute(delete(KnowledgeBase).where(KnowledgeBase.id == kb_id))
    async with sessions() as session:
        reference = select(Integration.knowledge_base_id).where(Integration.id == own.id)
        assert (await session.execute(reference)).one() == (None,)


async def test_agent_keys_read_but_do_not_write(
    client: Client, admin_headers: dict[str, str]
) -> None:
    kb_id = await _load(client, admin_headers)
    support_agent = await client.post(
        "/api/v1/agents", json={"name": "Ana", "email": "ana@example.com"}, headers=admin_headers
    )
    key = await client.post(
        "/api/v1/api-keys",
        json={"name": "desk", "role": "agent", "agent_id": support_agent.json()["id"]},
        headers=admin_headers,
    )
    agent = {"Authorization": f"Bearer {key.json()['api_key']}"}

    assert (await client.post("/api/v1/query", json={"question": "E1042"}, headers=agent)).json()[
        "mode"
    ] == "extractive"
    for response in (
        await client.post("/api/v1/knowledge-bases", json={"name": "x"}, headers=agent),
        await upload(client, agent, kb_id, "x.txt", b"hello"),
    ):
        assert response.status_code == 403
