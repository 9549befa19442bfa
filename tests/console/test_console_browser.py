"""The console in a real browser (Debian's Chromium, headless, driven by Playwright): an agent
signs in, a customer's message arrives by webhook and appears without a reload, the agent
replies (the channel receives it exactly once) and resolves the conversation.

Skips when /usr/bin/chromium is absent (CI installs it, and forbids skips). Screenshots of the
main screens are taken every run; `BOTLYNE_SCREENSHOTS=docs/console` also saves them there.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.core.resilience import resilience_manager
from tests.conftest import ROOT, make_settings
from tests.helpers import signed
from tests.live import LiveServer
from tests.stubs.evolution import EvolutionStub, messages_upsert_payload
from tests.stubs.gemini import GeminiStub

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CUSTOMER = "5511988887777@s.whatsapp.net"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def console_server(
    database_url: str,
    clean_db: AsyncEngine,
    console_evolution: EvolutionStub,
    console_gemini: GeminiStub,
) -> AsyncIterator[str]:
    console_evolution.reset()
    console_gemini.reset()
    await resilience_manager.reset()
    settings = make_settings(
        database_url,
        run_workers=True,
        evolution_api_base_url=console_evolution.base_url,
        evolution_api_global_key=console_evolution.api_key,
        google_api_key=console_gemini.api_key,
        google_api_base_url=console_gemini.base_url,
        delivery_retry_base_seconds=0.05,
        circuit_breaker_failure_threshold=50,
    )
    with LiveServer(create_app(settings)) as server:
        yield server.base_url
    await resilience_manager.reset()


async def earlier_exchange_with_the_bot(engine: AsyncEngine, integration: dict[str, Any]) -> None:
    """Maria's earlier question and the bot's answer from the knowledge base, with its sources
    (written directly: how the bot answers is the conversation loop's tests' business)."""
    async with engine.begin() as connection:
        conversation_id = (
            await connection.execute(
                text(
                    "INSERT INTO conversations (org_id, integration_id, thread_key, "
                    "contact_external_id, contact_name, channel) "
                    "SELECT org_id, id, :jid, :jid, 'Maria Oliveira', CAST(:channel AS jsonb) "
                    "FROM integrations WHERE id = :integration_id RETURNING id"
                ),
                {
                    "jid": CUSTOMER,
                    "integration_id": integration["id"],
                    "channel": json.dumps({"instance": "main", "remote_jid": CUSTOMER}),
                },
            )
        ).scalar_one()
        sources = [
            {
                "document_id": str(uuid.uuid4()),
                "chunk_id": str(uuid.uuid4()),
                "title": "Shipping",
                "snippet": "Orders ship within 2 business days from our warehouse in Campinas.",
                "score": 0.91,
            }
        ]
        for role, content, delay in (
            ("user", "How many business days until orders ship?", timedelta(minutes=2)),
            ("bot", "Orders ship within 2 business days [1].", timedelta(minutes=1)),
        ):
            await connection.execute(
                text(
                    "INSERT INTO messages (org_id, conversation_id, role, content, sources, "
                    "delivery_status, created_at) "
                    "SELECT org_id, id, :role, :content, CAST(:sources AS jsonb), :status, "
                    "now() - CAST(:delay AS interval) FROM conversations WHERE id = :id"
                ),
                {
                    "id": conversation_id,
                    "role": role,
                    "content": content,
                    "sources": json.dumps(sources) if role == "bot" else None,
                    "status": "sent" if role == "bot" else None,
                    "delay": delay,
                },
            )


def _save(shots: Path, name: str) -> Path:
    return shots / f"{name}.png"


async def test_an_agent_answers_and_resolves_from_the_console(
    console_server: str,
    browser: Any,
    admin_headers: dict[str, str],
    console_evolution: EvolutionStub,
    clean_db: AsyncEngine,
    tmp_path: Path,
) -> None:
    from playwright.async_api import expect

    base = console_server
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        integration = (
            await http.post(
                "/api/v1/integrations",
                json={"name": "WhatsApp", "type": "evolution", "config": {"instance": "main"}},
                headers=admin_headers,
            )
        ).json()
        await earlier_exchange_with_the_bot(clean_db, integration)
        agent = (
            await http.post(
                "/api/v1/agents",
                json={
                    "name": "Ana Souza",
                    "email": "ana@example.com",
                    "max_concurrent_conversations": 2,
                },
                headers=admin_headers,
            )
        ).json()
        key = (
            await http.post(
                "/api/v1/api-keys",
                json={"name": "Ana's console", "role": "agent", "agent_id": agent["id"]},
                headers=admin_headers,
            )
        ).json()["api_key"]

        async def customer(words: str, jid: str = CUSTOMER, name: str = "Maria Oliveira") -> None:
            payload = messages_upsert_payload("main", jid, words, push_name=name)
            body, headers = signed(integration["secret"], payload)
            headers.pop("X-Test-Peer")
            response = await http.post(
                f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
            )
            assert response.status_code == 202, response.text

        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        page.set_default_timeout(15_000)
        shots = tmp_path / "shots"
        shots.mkdir()

        await page.goto(f"{base}/console")
        await expect(page).to_have_url(f"{base}/console/sign-in")
        await page.get_by_label("Agent API key").fill(key)
        await page.screenshot(path=_save(shots, "sign-in"))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="My conversations")).to_be_visible()
        assert key not in await page.content()

        await page.get_by_role("button", name="Online").click()
        await expect(page.get_by_role("button", name="Online")).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(page.locator("[data-connection]")).to_have_text("Live")
        await page.evaluate("window.__sameDocument = true")

        # The customer asks for a person: the conversation appears without a reload.
        await customer("I want to talk to a human, please")
        item = page.locator("a.item", has_text="Maria Oliveira")
        await expect(item).to_be_visible()
        # Two more customers: one more for Ana (capacity 2), one left waiting in the queue.
        await customer("Quero falar com um atendente", "5511900001111@s.whatsapp.net", "Pedro")
        await customer("I need a person", "5511900002222@s.whatsapp.net", "Sofia Ramos")
        await expect(page.locator("[data-fragment=queue] a.item")).to_have_count(1)
        await expect(page.locator("[data-fragment=conversations] a.item")).to_have_count(2)
        assert await page.evaluate("window.__sameDocument === true")
        await page.screenshot(path=_save(shots, "conversations"), full_page=True)

        await item.click()
        await expect(page.get_by_role("heading", name="Maria Oliveira")).to_be_visible()
        await expect(page.locator("[data-escalation-reason]")).to_have_text(
            "The customer asked for a person"
        )
        await expect(page.get_by_text("Sources (1)")).to_be_visible()
        await page.get_by_text("Sources (1)").click()
        await expect(page.locator(".sources li").first).to_contain_text("Shipping")
        await expect(page.locator("[data-connection]")).to_have_text("Live")
        await page.evaluate("window.__sameDocument = true")

        # A new message from the customer shows up in the open thread by itself.
        await customer("My order number is 4417")
        await expect(page.get_by_text("My order number is 4417")).to_be_visible()
        assert await page.evaluate("window.__sameDocument === true")

        reply = "Hi Maria, Ana here. Order 4417 ships tomorrow."
        await page.get_by_label("Reply to Maria Oliveira").fill(reply)
        await page.get_by_role("button", name="Send reply").click()
        await expect(page.locator(".message-agent", has_text=reply)).to_be_visible()
        await expect(page.get_by_label("Reply to Maria Oliveira")).to_have_value("")
        # Live refreshes keep the sources the agent unfolded open.
        await expect(page.locator(".sources li").first).to_be_visible()
        await page.screenshot(path=_save(shots, "thread"), full_page=True)

        # Three "connecting you" notices and the reply.
        sent = await console_evolution.wait_for_async(4, timeout=15)
        await asyncio.sleep(1.0)
        texts = [message.text for message in console_evolution.sent]
        assert texts.count(reply) == 1
        assert [s.number for s in sent if s.text == reply] == ["5511988887777"]

        phone = await browser.new_context(
            viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
        )
        await phone.add_cookies(await context.cookies())
        small = await phone.new_page()
        await small.goto(page.url)
        await expect(small.get_by_role("button", name="Send reply")).to_be_visible()
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the thread scrolls sideways on a phone ({width}px)"
        await small.screenshot(path=_save(shots, "thread-phone"), full_page=True)
        await phone.close()

        await page.get_by_role("button", name="Resolve").click()
        await expect(page.get_by_text("Conversation resolved.")).to_be_visible()
        await expect(page.locator("a.item", has_text="Maria Oliveira")).to_have_count(0)
        conversations = (await http.get("/api/v1/conversations", headers=admin_headers)).json()
        [maria] = [c for c in conversations["items"] if c["contact"]["name"] == "Maria Oliveira"]
        assert maria["status"] == "resolved"
        await context.close()

    target = os.environ.get("BOTLYNE_SCREENSHOTS")
    if target:
        destination = (ROOT / target).resolve()
        destination.mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copyfile(shot, destination / shot.name)
