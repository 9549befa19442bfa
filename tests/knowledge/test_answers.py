"""POST /query: cited answers from Gemini, extractive answers without it, and no answer at all."""

from __future__ import annotations

import uuid

from tests.knowledge.conftest import Client, create_kb, pdf_with_text, upload
from tests.stubs import GeminiStub

REFUNDS_MD = b"""# Refund timelines

## Card refunds

A card refund reaches the customer's statement within 5 to 10 business days.
The processing fee is not returned when you refund a payment.

## Bank refunds

ACH refunds take 3 business days after the debit has settled.
"""

TERMINAL_PDF = pdf_with_text(
    "NP-410 terminal",
    "The NP-410 battery lasts 14 hours on a full charge.",
    "Error T-07 means the printer paper is out; load a new roll.",
)


async def _load(client: Client, headers: dict[str, str]) -> str:
    kb_id = await create_kb(client, headers)
    md = await upload(client, headers, kb_id, "refunds.md", REFUNDS_MD, "text/markdown")
    pdf = await upload(client, headers, kb_id, "np-410.pdf", TERMINAL_PDF, "application/pdf")
    assert (md.status_code, pdf.status_code) == (201, 201), (md.text, pdf.text)
    assert md.json()["title"] == "refunds"
    assert pdf.json()["content_type"] == "application/pdf"
    return kb_id


async def test_cited_answer_from_a_pdf_and_a_markdown_file(
    gemini_client: Client, admin_headers: dict[str, str], gemini: GeminiStub
) -> None:
    kb_id = await _load(gemini_client, admin_headers)
    # Both uploads were embedded for the dense arm.
    assert gemini.calls("batch_embed") == 2

    response = await gemini_client.post(
        "/api/v1/query",
        json={"question": "How long does the NP-410 battery last?", "knowledge_base_id": kb_id},
        headers=admin_headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "generated"
    assert body["degraded"] is False
    # The stub answers with the first sentence of source [1] and cites it.
    assert body["answer"].endswith("[1]")
    assert "14 hours" in gemini.last_prompt
    assert [source["title"] for source in body["sources"]] == ["np-410"]
    assert "14 hours" in body["sources"][0]["snippet"]
    assert 0 < body["confidence"] <= 1

    # Markdown headings become the chunk's heading; the question is answered from that chunk.
    card = await gemini_client.post(
        "/api/v1/query",
        json={"question": "Is the processing fee returned on a card refund?"},
        headers=admin_headers,
    )
    assert card.json()["mode"] == "generated"
    assert card.json()["sources"][0]["title"] == "refunds"
    assert "[1] (refunds > Refund timelines > Card refunds)" in gemini.last_prompt


async def test_invented_citations_are_dropped(
    gemini_client: Client, admin_headers: dict[str, str], gemini: GeminiStub
) -> None:
    await _load(gemini_client, admin_headers)
    gemini.reply_with("The battery lasts 14 hours [1]. It is also waterproof [7].")

    body = (
        await gemini_client.post(
            "/api/v1/query", json={"question": "NP-410 battery hours"}, headers=admin_headers
        )
    ).json()

    assert body["answer"] == "The battery lasts 14 hours [1]. It is also waterproof."
    assert len(body["sources"]) == 1


async def test_model_saying_no_answer_is_no_answer(
    gemini_client: Client, admin_headers: dict[str, str], gemini: GeminiStub
) -> None:
    await _load(gemini_client, admin_headers)
    gemini.reply_with("NO_ANSWER")

    body = (
        await gemini_client.post(
            "/api/v1/query", json={"question": "NP-410 battery hours"}, headers=admin_headers
        )
    ).json()

    assert (body["mode"], body["sources"], body["degraded"]) == ("no_answer", [], False)


async def test_extractive_answer_when_gemini_fails_or_is_gone(
    gemini_client: Client, admin_headers: dict[str, str], gemini: GeminiStub
) -> None:
    await _load(gemini_client, admin_headers)
    question = {"question": "What does error T-07 mean on the NP-410?"}

    gemini.mode = "503"
    failing = await gemini_client.post("/api/v1/query", json=question, headers=admin_headers)
    gemini.stop()
    gone = await gemini_client.post("/api/v1/query", json=question, headers=admin_headers)

    for response in (failing, gone):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["mode"], body["degraded"]) == ("extractive", True)
        assert "printer paper is out" in body["answer"]
        assert body["answer"].endswith("[1]")
        assert body["sources"][0]["title"] == "np-410"


async def test_extractive_answer_without_a_gemini_key(
    client: Client, admin_headers: dict[str, str]
) -> None:
    await _load(client, admin_headers)

    body = (
        await client.post(
            "/api/v1/query",
            json={"question": "how long do ACH refunds take?"},
            headers=admin_headers,
        )
    ).json()

    assert (body["mode"], body["degraded"]) == ("extractive", True)
    assert "ACH refunds take 3 business days" in body["answer"]


async def test_unanswerable_question_gets_no_answer(
    gemini_client: Client, admin_headers: dict[str, str], gemini: GeminiStub
) -> None:
    await _load(gemini_client, admin_headers)

    for question in ("What is the capital of Peru?", "What does error T-09 mean?"):
        response = await gemini_client.post(
            "/api/v1/query", json={"question": question}, headers=admin_headers
        )
        body = response.json()
        assert body["mode"] == "no_answer", (question, body)
        assert body["sources"] == []
        assert body["answer"] == "I couldn't find an answer to that in the knowledge base."
    assert gemini.calls("generate") == 0


async def test_query_validation(client: Client, admin_headers: dict[str, str]) -> None:
    no_kb = await client.post("/api/v1/query", json={"question": "hi"}, headers=admin_headers)
    assert no_kb.status_code == 404
    assert no_kb.json()["detail"] == "The organization has no knowledge base"

    kb_id = await create_kb(client, admin_headers)
    for body, status in (
        ({"question": ""}, 422),
        ({"question": "hi", "top_k": 0}, 422),
        ({"question": "hi", "knowledge_base_id": "nope"}, 422),
        ({"question": "hi", "knowledge_base_id": str(uuid.uuid4())}, 404),
        ({"question": "hi", "conversation_id": str(uuid.uuid4())}, 404),
        ({"question": "hi", "surprise": 1}, 422),
    ):
        response = await client.post("/api/v1/query", json=body, headers=admin_headers)
        assert response.status_code == status, (body, response.text)
    empty = await client.post(
        "/api/v1/query",
        json={"question": "anything", "knowledge_base_id": kb_id},
        headers=admin_headers,
    )
    assert empty.json()["mode"] == "no_answer"
