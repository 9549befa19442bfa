"""The stubs must be indistinguishable from the real services to the real clients.

Gemini is exercised through the google-genai SDK itself, so a drift in the SDK's
paths, headers or response parsing shows up here rather than in app tests.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import httpx2
import pytest
from google import genai
from google.genai import errors, types

from tests.stubs import (
    EvolutionStub,
    GeminiStub,
    extended_text_upsert_payload,
    hashed_embedding,
    messages_upsert_payload,
)

GEMINI_KEY = "k"
EVO_KEY = "evo-key"

SOURCES_PROMPT = (
    "Answer using only the sources and cite them.\n"
    "[1] Refunds are issued within 5 business days. Contact support for help.\n"
    "[2] Shipping is free above 50 euros.\n\n"
    "Question: how long do refunds take?"
)


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[GeminiStub]:
    with GeminiStub(api_key=GEMINI_KEY) as stub:
        yield stub


@pytest.fixture
def gemini(gemini_server: GeminiStub) -> GeminiStub:
    gemini_server.reset()
    return gemini_server


# Module-scoped clients: building one costs ~60-90 ms of TLS context set-up.
@pytest.fixture(scope="module")
async def client(gemini_server: GeminiStub) -> AsyncIterator[genai.Client]:
    sdk = genai.Client(
        api_key=GEMINI_KEY,
        http_options=types.HttpOptions(base_url=gemini_server.base_url, api_version="v1beta"),
    )
    yield sdk
    await sdk.aio.aclose()


@pytest.fixture(scope="module")
def evolution_server() -> Iterator[EvolutionStub]:
    with EvolutionStub(api_key=EVO_KEY, instances=["botlyne"]) as stub:
        yield stub


@pytest.fixture
def evolution(evolution_server: EvolutionStub) -> EvolutionStub:
    evolution_server.reset()
    return evolution_server


@pytest.fixture(scope="module")
async def evo_http(evolution_server: EvolutionStub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=evolution_server.base_url, headers={"apikey": EVO_KEY}, timeout=5
    ) as http:
        yield http


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


# -- server plumbing -----------------------------------------------------------


def test_server_restarts_on_same_port() -> None:
    stub = GeminiStub()
    with httpx.Client() as http:
        with stub:
            port = stub.port
            assert http.get(f"{stub.base_url}/v1beta/models").status_code == 403
        assert not stub.running
        with pytest.raises(httpx.ConnectError):
            http.get(f"{stub.base_url}/v1beta/models")
        with stub:
            assert stub.port == port
            assert http.get(f"{stub.base_url}/v1beta/models").status_code == 403


# -- Gemini through the real SDK -----------------------------------------------


async def test_generate_cites_source_one(gemini: GeminiStub, client: genai.Client) -> None:
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents=SOURCES_PROMPT,
        config=types.GenerateContentConfig(system_instruction="You are Botlyne.", temperature=0),
    )

    assert response.text == "Refunds are issued within 5 business days. [1]"
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == "gemini-2.5-flash"
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count
    assert usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count

    (request,) = gemini.requests
    assert request.method == "POST"
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.headers["x-goog-api-key"] == GEMINI_KEY
    assert request.body["systemInstruction"]["parts"] == [{"text": "You are Botlyne."}]
    assert request.body["generationConfig"] == {"temperature": 0}
    assert (gemini.last_prompt or "").startswith("You are Botlyne.\n")
    assert gemini.calls("generate") == 1


async def test_generate_without_sources_and_overrides(
    gemini: GeminiStub, client: genai.Client
) -> None:
    model = "gemini-2.5-flash"
    plain = await client.aio.models.generate_content(model=model, contents="Cite like [1]. Hi?")
    assert plain.text == "I don't know."

    gemini.reply_with("fixed")
    assert (await client.aio.models.generate_content(model=model, contents="x")).text == "fixed"

    gemini.reply_fn = lambda prompt: prompt.upper()
    assert (await client.aio.models.generate_content(model=model, contents="abc")).text == "ABC"


async def test_stream_generate_reassembles(gemini: GeminiStub, client: genai.Client) -> None:
    stream = await client.aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents=SOURCES_PROMPT
    )
    chunks = [chunk.text async for chunk in stream]
    assert len(chunks) > 1
    assert "".join(c or "" for c in chunks) == "Refunds are issued within 5 business days. [1]"


async def test_embed_content_uses_batch_endpoint(gemini: GeminiStub, client: genai.Client) -> None:
    texts = ["Refund policy for orders", "How do refunds for orders work?", "Shipping costs"]
    result = await client.aio.models.embed_content(
        model="gemini-embedding-001",
        contents=texts,
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", output_dimensionality=64),
    )

    assert result.embeddings is not None
    vectors = [e.values or [] for e in result.embeddings]
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert vectors[0] == hashed_embedding(texts[0], 64)
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2])
    assert all(math.isclose(_cosine(v, v), 1.0) for v in vectors)

    # The SDK never calls :embedContent for the Gemini API, even for one text.
    single = await client.aio.models.embed_content(model="text-embedding-004", contents="hi")
    assert single.embeddings is not None
    assert len(single.embeddings[0].values or []) == 256
    paths = [r.path for r in gemini.requests]
    assert paths == [
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        "/v1beta/models/text-embedding-004:batchEmbedContents",
    ]
    first = gemini.requests[0].body["requests"][0]
    assert first["model"] == "models/gemini-embedding-001"
    assert first["taskType"] == "RETRIEVAL_DOCUMENT"
    assert gemini.calls("batch_embed") == 2


def test_embeddings_fold_accents_and_case() -> None:
    assert hashed_embedding("Não É") == hashed_embedding("nao e")
    assert math.isclose(
        _cosine(hashed_embedding("política de reembolso"), hashed_embedding("politica")),
        1 / math.sqrt(3),
    )


async def test_single_embed_content_endpoint(gemini: GeminiStub) -> None:
    async with httpx.AsyncClient(base_url=gemini.base_url) as http:
        response = await http.post(
            "/v1beta/models/text-embedding-004:embedContent",
            headers={"x-goog-api-key": GEMINI_KEY},
            json={"content": {"parts": [{"text": "olá"}]}, "outputDimensionality": 16},
        )
    assert response.status_code == 200
    assert response.json() == {"embedding": {"values": hashed_embedding("ola", 16)}}


async def test_models_metadata(gemini: GeminiStub, client: genai.Client) -> None:
    names = [m.name async for m in await client.aio.models.list()]
    assert "models/gemini-2.5-flash" in names
    model = await client.aio.models.get(model="gemini-embedding-001")
    assert model.name == "models/gemini-embedding-001"
    assert "embedContent" in (model.supported_actions or [])
    gemini.mode = "503"  # metadata is the health probe: failure modes do not apply
    assert (await client.aio.models.get(model="gemini-2.5-flash")).input_token_limit


@pytest.mark.parametrize(
    ("status", "error_cls", "google_status"),
    [
        (503, errors.ServerError, "UNAVAILABLE"),
        (500, errors.ServerError, "INTERNAL"),
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
    ],
)
async def test_failure_modes_surface_as_sdk_errors(
    gemini: GeminiStub,
    client: genai.Client,
    status: int,
    error_cls: type[errors.APIError],
    google_status: str,
) -> None:
    gemini.mode = str(status)
    with pytest.raises(error_cls) as caught:
        await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == status
    assert caught.value.status == google_status
    gemini.mode = "ok"
    assert (await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")).text


async def test_429_carries_retry_info(gemini: GeminiStub, client: genai.Client) -> None:
    gemini.fail_next(1, status=429)
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.embed_content(model="text-embedding-004", contents="x")
    details = caught.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"} in details


async def test_fail_next_then_recover(gemini: GeminiStub, client: genai.Client) -> None:
    gemini.fail_next(2, status=503)
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert (await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")).text
    assert gemini.calls("generate") == 3


async def test_sdk_retry_options_ride_out_transient_failures(gemini: GeminiStub) -> None:
    sdk = genai.Client(
        api_key=GEMINI_KEY,
        http_options=types.HttpOptions(
            base_url=gemini.base_url,
            retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02),
        ),
    )
    gemini.fail_next(2, status=503)
    response = await sdk.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    await sdk.aio.aclose()
    assert response.text == "I don't know."
    assert gemini.calls("generate") == 3


async def test_slow_mode_trips_client_timeout(gemini: GeminiStub) -> None:
    gemini.mode = "slow"
    gemini.slow_seconds = 5
    sdk = genai.Client(
        api_key=GEMINI_KEY,
        http_options=types.HttpOptions(base_url=gemini.base_url, timeout=200),  # milliseconds
    )
    started = time.monotonic()
    # google-genai 3.6 sends through httpx2 (its own dependency), not httpx.
    with pytest.raises(httpx2.TimeoutException):
        await sdk.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    await sdk.aio.aclose()
    assert time.monotonic() - started < 2
    # X-Server-Timeout is how the SDK tells Google its deadline, in whole seconds.
    assert gemini.requests[-1].headers["x-server-timeout"] == "1"


async def test_bad_or_missing_key(gemini: GeminiStub) -> None:
    wrong = genai.Client(api_key="nope", http_options=types.HttpOptions(base_url=gemini.base_url))
    with pytest.raises(errors.ClientError) as caught:
        await wrong.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    await wrong.aio.aclose()
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "API key not valid. Please pass a valid API key."

    async with httpx.AsyncClient(base_url=gemini.base_url) as http:
        missing = await http.get("/v1/models")
        by_query = await http.get("/v1/models", params={"key": GEMINI_KEY})
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert by_query.status_code == 200


async def test_wrong_model_family_is_not_found(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="text-embedding-004", contents="hi")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


def test_mode_is_validated(gemini: GeminiStub) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        gemini.mode = "down"


# -- Evolution over plain HTTP -------------------------------------------------


async def test_send_text_v2(evolution: EvolutionStub, evo_http: httpx.AsyncClient) -> None:
    response = await evo_http.post(
        "/message/sendText/botlyne",
        json={"number": "5511912345678", "text": "Olá!", "delay": 1200, "linkPreview": False},
    )

    assert response.status_code == 201
    data = response.json()
    assert data["key"]["remoteJid"] == "5511912345678@s.whatsapp.net"
    assert data["key"]["fromMe"] is True
    assert re.fullmatch(r"[0-9A-F]{16}", data["key"]["id"])
    assert data["message"] == {"conversation": "Olá!"}
    assert isinstance(data["messageTimestamp"], int)
    assert data["status"] == "PENDING"
    (sent,) = evolution.sent
    assert sent[:3] == ("botlyne", "5511912345678", "Olá!")
    assert sent.headers["apikey"] == EVO_KEY


async def test_send_text_v1_shape(evolution: EvolutionStub, evo_http: httpx.AsyncClient) -> None:
    response = await evo_http.post(
        "/message/sendText/botlyne",
        json={
            "number": "+55 11 91234-5678",
            "options": {"delay": 0},
            "textMessage": {"text": "oi"},
        },
    )
    assert response.status_code == 201
    assert response.json()["key"]["remoteJid"] == "5511912345678@s.whatsapp.net"
    assert evolution.sent[0].text == "oi"


async def test_send_text_rejections(evolution: EvolutionStub, evo_http: httpx.AsyncClient) -> None:
    unauthorized = await evo_http.post(
        "/message/sendText/botlyne", json={"number": "1", "text": "x"}, headers={"apikey": "bad"}
    )
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {
        "status": 401,
        "error": "Unauthorized",
        "response": {"message": "Unauthorized"},
    }

    bad = await evo_http.post("/message/sendText/botlyne", json={"number": 5511, "text": ""})
    assert bad.status_code == 400
    assert bad.json()["error"] == "Bad Request"
    assert len(bad.json()["response"]["message"]) == 2

    evolution.not_on_whatsapp.add("5511000000000")
    missing = await evo_http.post(
        "/message/sendText/botlyne", json={"number": "5511000000000", "text": "x"}
    )
    assert missing.status_code == 400
    assert missing.json()["response"]["message"][0]["exists"] is False

    unknown = await evo_http.post("/message/sendText/other", json={"number": "1", "text": "x"})
    assert unknown.status_code == 404
    assert evolution.sent == []


async def test_health_and_connection_state(
    evolution: EvolutionStub, evo_http: httpx.AsyncClient
) -> None:
    root = await evo_http.get("/", headers={"apikey": ""})
    assert root.status_code == 200
    assert root.json()["message"] == "Welcome to the Evolution API, it is working!"
    assert root.json()["version"].startswith("2.")

    state = await evo_http.get("/instance/connectionState/botlyne")
    assert state.json() == {"instance": {"instanceName": "botlyne", "state": "open"}}


@pytest.mark.parametrize("mode", ["500", "503", "down"])
async def test_evolution_failure_modes(
    evolution: EvolutionStub, evo_http: httpx.AsyncClient, mode: str
) -> None:
    evolution.mode = mode
    response = await evo_http.post("/message/sendText/botlyne", json={"number": "1", "text": "x"})
    assert response.status_code == (int(mode) if mode.isdigit() else 503)
    assert evolution.sent == []
    root = await evo_http.get("/")
    assert root.status_code == (503 if mode == "down" else 200)


async def test_evolution_fail_next_and_wait(
    evolution: EvolutionStub, evo_http: httpx.AsyncClient
) -> None:
    evolution.fail_next(1, status=500)
    failed = await evo_http.post("/message/sendText/botlyne", json={"number": "1", "text": "a"})
    assert failed.status_code == 500
    assert failed.json()["response"]["message"] == "Internal Server Error"

    # A sender on another thread, as the app's outbound worker would be.
    def send_later() -> None:
        time.sleep(0.05)
        httpx.post(
            f"{evolution.base_url}/message/sendText/botlyne",
            json={"number": "1", "text": "b"},
            headers={"apikey": EVO_KEY},
        )

    worker = threading.Thread(target=send_later)
    worker.start()
    assert [m.text for m in await evolution.wait_for_async(1, timeout=2)] == ["b"]
    worker.join()
    assert evolution.wait_for(1, timeout=0.1)[0].text == "b"
    with pytest.raises(TimeoutError, match="expected 2 sends"):
        evolution.wait_for(2, timeout=0.05)
    assert evolution.calls("send_text") == 2


async def test_evolution_slow_mode(evolution: EvolutionStub, evo_http: httpx.AsyncClient) -> None:
    evolution.mode = "slow"
    evolution.slow_seconds = 0.3
    started = time.monotonic()
    response = await evo_http.post("/message/sendText/botlyne", json={"number": "1", "text": "z"})
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.3


def test_webhook_payloads() -> None:
    payload = messages_upsert_payload("botlyne", "5511912345678", "Oi", message_id="ABC")
    assert payload["event"] == "messages.upsert"
    assert payload["instance"] == "botlyne"
    data = payload["data"]
    assert data["key"] == {
        "remoteJid": "5511912345678@s.whatsapp.net",
        "fromMe": False,
        "id": "ABC",
    }
    assert data["message"]["conversation"] == "Oi"
    assert data["messageType"] == "conversation"
    assert data["pushName"] == "Ana"
    assert payload["date_time"].endswith("Z")
    assert {"destination", "sender", "server_url", "apikey"} <= payload.keys()

    extended = extended_text_upsert_payload("botlyne", "5511912345678@s.whatsapp.net", "link")
    assert extended["data"]["message"]["extendedTextMessage"] == {"text": "link"}
    assert extended["data"]["messageType"] == "extendedTextMessage"
    assert extended["data"]["key"]["id"] != payload["data"]["key"]["id"]
