"""The agents' console: server-rendered pages under `/console`, updated live from the event
stream by a little plain JavaScript (`static/console.js`; no build step, nothing from a CDN).

Signing in stores the agent's API key in an HttpOnly, SameSite=Strict cookie limited to
`/console` (Secure over https); the key is never rendered into a page or readable by scripts.
The browser's event stream is opened with a short-lived token from `POST /console/events/token`
(the cookie proves the key), never with the key in a URL. Forms post with the cookie; a
cross-site post carries no cookie (SameSite=Strict) and one with a foreign `Origin` is refused.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, MediaType, Request, Response, Router, get, post
from litestar.datastructures import Cookie, State
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DbSession
from app.domain.console.service import STATUSES, ConsoleService
from app.domain.events.tokens import issue_token, token_key_hash
from app.domain.orgs.auth import Principal, authenticate

PACKAGE = Path(__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"
COOKIE = "botlyne_console"
MAX_REPLY = 4096
NOTICES = {
    "sent": "Reply sent.",
    "transferred": "Conversation transferred.",
    "resolved": "Conversation resolved.",
    "status": "Status updated.",
}
# Every response also carries nosniff, X-Frame-Options and Referrer-Policy
# (app.core.middleware); the pages add their own policy.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}


def _secure(request: Request[Any, Any, Any]) -> bool:
    return (
        request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").lower() == "https"
    )


def same_origin(request: Request[Any, Any, Any]) -> bool:
    """A form post from our own pages: `Origin` (when sent) names this host, and
    `Sec-Fetch-Site` (when sent) says same-origin."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    # Behind a proxy that rewrites Host, the original one is in X-Forwarded-Host (a browser
    # cannot add that header to a cross-site form post, so trusting it here is safe).
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return urlsplit(origin).netloc in hosts - {None}


def _check_origin(request: Request[Any, Any, Any]) -> None:
    if not same_origin(request):
        raise PermissionDeniedException("Cross-site request refused")


async def console_principal(
    request: Request[Any, Any, Any], db_session: DbSession
) -> Principal | None:
    key = request.cookies.get(COOKIE)
    if not key:
        return None
    principal = await authenticate(db_session, key)
    if principal is None or principal.role != "agent" or principal.agent_id is None:
        return None
    return principal


def _to_sign_in() -> Redirect:
    return Redirect(path="/console/sign-in", status_code=HTTP_303_SEE_OTHER)


def _fetching(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("x-requested-with") == "console"


def _page(name: str, status_code: int = 200, **context: Any) -> Template:
    return Template(
        template_name=name,
        context=context,
        media_type=MediaType.HTML,
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


async def _thread_page(
    request: Request[Any, Any, Any],
    service: ConsoleService,
    conversation_id: uuid.UUID,
    failure: HTTPException | None = None,
) -> Template:
    """The thread; after a refused move, with the reason (and the move's status code)."""
    thread = await service.thread(conversation_id)
    return _page(
        "thread.html",
        failure.status_code if failure is not None else 200,
        agent=await service.me(),
        statuses=STATUSES,
        thread=thread,
        colleagues=await service.colleagues() if thread.held else [],
        notice=NOTICES.get(request.query_params.get("notice", "")),
        error=failure.detail if failure is not None else None,
    )


async def _signed_in_service(
    request: Request[Any, Any, Any], db_session: AsyncSession, state: State
) -> ConsoleService:
    """The console service for the signed-in agent of a fragment request (401 when signed out:
    the page's script then sends the agent back to sign in)."""
    principal = await console_principal(request, db_session)
    if principal is None:
        raise NotAuthorizedException("Signed out")
    return ConsoleService(db_session, principal, state.read_marks)


class ConsoleController(Controller):
    path = "/"
    include_in_schema = False

    @get("/sign-in")
    async def sign_in_page(self, request: Request[Any, Any, Any], db_session: DbSession) -> Any:
        if await console_principal(request, db_session) is not None:
            return Redirect(path="/console", status_code=HTTP_303_SEE_OTHER)
        return _page("sign_in.html", error=None)

    @post("/sign-in", status_code=200)
    async def sign_in(self, request: Request[Any, Any, Any], db_session: DbSession) -> Any:
        _check_origin(request)
        form = await request.form()
        key = str(form.get("api_key") or "").strip()
        principal = await authenticate(db_session, key) if key else None
        if principal is None:
            return _page("sign_in.html", 401, error="That key is not valid.")
        if principal.role != "agent" or principal.agent_id is None:
            return _page(
                "sign_in.html", 403, error="The console is for agents: use an agent's API key."
            )
        response = Redirect(path="/console", status_code=HTTP_303_SEE_OTHER)
        response.set_cookie(
            Cookie(
                key=COOKIE,
                value=key,
                path="/console",
                httponly=True,
                samesite="strict",
                secure=_secure(request),
            )
        )
        return response

    @post("/sign-out", status_code=HTTP_303_SEE_OTHER)
    async def sign_out(self, request: Request[Any, Any, Any], db_session: DbSession) -> Redirect:
        """Leaving sets the agent offline (its unanswered conversations go back to the queue)."""
        _check_origin(request)
        principal = await console_principal(request, db_session)
        if principal is not None:
            service = ConsoleService(db_session, principal, request.app.state.read_marks)
            await service.set_status("offline")
        response = _to_sign_in()
        response.delete_cookie(COOKIE, path="/console")
        return response

    @get("/")
    async def desk(
        self, request: Request[Any, Any, Any], db_session: DbSession, state: State
    ) -> Any:
        principal = await console_principal(request, db_session)
        if principal is None:
            return _to_sign_in()
        service = ConsoleService(db_session, principal, state.read_marks)
        return _page(
            "desk.html",
            agent=await service.me(),
            statuses=STATUSES,
            conversations=await service.mine(),
            queue=await service.queue(),
            notice=NOTICES.get(request.query_params.get("notice", "")),
        )

    @post("/status", status_code=HTTP_303_SEE_OTHER)
    async def set_status(
        self, request: Request[Any, Any, Any], db_session: DbSession, state: State
    ) -> Any:
        _check_origin(request)
        principal = await console_principal(request, db_session)
        if principal is None:
            return _to_sign_in()
        status = str((await request.form()).get("status") or "")
        if status not in STATUSES:
            raise HTTPException(status_code=400, detail="Unknown status")
        await ConsoleService(db_session, principal, state.read_marks).set_status(status)
        return Redirect(path="/console?notice=status", status_code=HTTP_303_SEE_OTHER)

    @get("/fragments/conversations")
    async def conversations_fragment(
        self, request: Request[Any, Any, Any], db_session: DbSession, state: State
    ) -> Template:
        service = await _signed_in_service(request, db_session, state)
        return _page("_conversations.html", conversations=await service.mine())

    @get("/fragments/queue")
    async def queue_fragment(
        self, request: Request[Any, Any, Any], db_session: DbSession, state: State
    ) -> Template:
        service = await _signed_in_service(request, db_session, state)
        return _page("_queue.html", queue=await service.queue())

    @get("/fragments/agent")
    async def agent_fragment(
        self, request: Request[Any, Any, Any], db_session: DbSession, state: State
    ) -> Template:
        service = await _signed_in_service(request, db_session, state)
        return _page("_status.html", agent=await service.me(), statuses=STATUSES)

    @get("/conversations/{conversation_id:uuid}")
    async def thread(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        state: State,
        conversation_id: FromPath[uuid.UUID],
    ) -> Any:
        principal = await console_principal(request, db_session)
        if principal is None:
            return _to_sign_in()
        service = ConsoleService(db_session, principal, state.read_marks)
        return await _thread_page(request, service, conversation_id)

    @get("/conversations/{conversation_id:uuid}/messages")
    async def messages_fragment(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        state: State,
        conversation_id: FromPath[uuid.UUID],
    ) -> Template:
        principal = await console_principal(request, db_session)
        if principal is None:
            raise NotAuthorizedException("Signed out")
        thread = await ConsoleService(db_session, principal, state.read_marks).thread(
            conversation_id
        )
        return _page("_messages.html", thread=thread)

    @post("/conversations/{conversation_id:uuid}/reply", status_code=HTTP_303_SEE_OTHER)
    async def reply(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        state: State,
        conversation_id: FromPath[uuid.UUID],
    ) -> Any:
        _check_origin(request)
        principal = await console_principal(request, db_session)
        if principal is None:
            raise NotAuthorizedException("Signed out")
        text = str((await request.form()).get("message") or "").strip()
        if not text or len(text) > MAX_REPLY:
            raise HTTPException(status_code=422, detail=f"A reply has 1 to {MAX_REPLY} characters")
        service = ConsoleService(db_session, principal, state.read_marks)
        try:
            await service.reply(conversation_id, text)
        except HTTPException as exc:
            await db_session.rollback()
            if _fetching(request):
                return Response({"error": exc.detail}, status_code=exc.status_code)
            return await _thread_page(request, service, conversation_id, exc)
        if _fetching(request):
            return Response({"notice": NOTICES["sent"]}, status_code=201)
        return Redirect(
            path=f"/console/conversations/{conversation_id}?notice=sent",
            status_code=HTTP_303_SEE_OTHER,
        )

    @post("/conversations/{conversation_id:uuid}/transfer", status_code=HTTP_303_SEE_OTHER)
    async def transfer(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        state: State,
        conversation_id: FromPath[uuid.UUID],
    ) -> Any:
        _check_origin(request)
        principal = await console_principal(request, db_session)
        if principal is None:
            return _to_sign_in()
        form = await request.form()
        target = str(form.get("to") or "queue")
        note = str(form.get("note") or "").strip()[:500]
        try:
            to_agent_id = None if target == "queue" else uuid.UUID(target)
        except ValueError:
            raise HTTPException(status_code=400, detail="Unknown transfer target") from None
        service = ConsoleService(db_session, principal, state.read_marks)
        try:
            await service.transfer(conversation_id, to_agent_id, note)
        except HTTPException as exc:
            await db_session.rollback()
            return await _thread_page(request, service, conversation_id, exc)
        return Redirect(path="/console?notice=transferred", status_code=HTTP_303_SEE_OTHER)

    @post("/conversations/{conversation_id:uuid}/resolve", status_code=HTTP_303_SEE_OTHER)
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        state: State,
        conversation_id: FromPath[uuid.UUID],
    ) -> Any:
        _check_origin(request)
        principal = await console_principal(request, db_session)
        if principal is None:
            return _to_sign_in()
        service = ConsoleService(db_session, principal, state.read_marks)
        try:
            await service.resolve(conversation_id)
        except HTTPException as exc:
            await db_session.rollback()
            return await _thread_page(request, service, conversation_id, exc)
        return Redirect(path="/console?notice=resolved", status_code=HTTP_303_SEE_OTHER)

    @post("/events/token", status_code=201)
    async def events_token(
        self, request: Request[Any, Any, Any], db_session: DbSession
    ) -> dict[str, Any]:
        """A stream token for the signed-in agent (the page's script cannot read the key)."""
        _check_origin(request)
        principal = await console_principal(request, db_session)
        key_hash = await token_key_hash(db_session, principal.key_id) if principal else None
        if principal is None or key_hash is None:
            raise NotAuthorizedException("Signed out")
        token, expires = issue_token(principal.key_id, key_hash)
        return {
            "stream_url": f"/api/v1/events/stream?token={token}",
            "expires": expires,
            "agent_id": str(principal.agent_id),
            "conversation_base": "/console/conversations/",
        }


async def _security_headers(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


def console_router() -> Router:
    return Router(
        path="/console",
        route_handlers=[
            ConsoleController,
            create_static_files_router(
                path="/static", directories=[STATIC], include_in_schema=False
            ),
        ],
        include_in_schema=False,
        after_request=_security_headers,
    )
