"""HTTP for knowledge bases, their documents, retrieval (`/search`) and answers (`/query`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State, UploadFile
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_415_UNSUPPORTED_MEDIA_TYPE

from app.config import DOCUMENT_MAX_BYTES_CEILING
from app.core.db import DbSession
from app.core.openapi import error_responses
from app.domain.knowledge.answers import snippet
from app.domain.knowledge.extraction import TEXT_TYPES, content_type_of
from app.domain.knowledge.ingestion import Upload
from app.domain.knowledge.schemas import (
    DocumentCreate,
    DocumentDetail,
    DocumentList,
    DocumentOut,
    KnowledgeBaseCreate,
    KnowledgeBaseList,
    KnowledgeBaseOut,
    QueryAnswer,
    QueryRequest,
    Scores,
    SearchHit,
    SearchResults,
    Source,
)
from app.domain.knowledge.service import Answer, KnowledgeSearch, KnowledgeService
from app.domain.orgs.auth import Caller, Principal

KnowledgeBaseId = FromPath[uuid.UUID]
DocumentId = FromPath[uuid.UUID]
# Room for the multipart envelope around a file of the largest size the setting may allow.
UPLOAD_BODY_LIMIT = DOCUMENT_MAX_BYTES_CEILING + 1024 * 1024
MAX_TITLE = 300


@dataclass
class DocumentUploadOperation(Operation):
    """Declares the two bodies the upload accepts; Litestar derives only one from a handler."""

    def __post_init__(self) -> None:
        text = Schema(type=OpenAPIType.STRING)
        self.request_body = RequestBody(
            required=True,
            description=(
                "Either JSON with the text itself, or a multipart form with a `file` (.txt, .md, "
                ".html, .pdf) and an optional `title` (default: the file name without extension)."
                " A document with the title of an existing one replaces it (200)."
            ),
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["title", "content"],
                        additional_properties=False,
                        properties={
                            "title": Schema(
                                type=OpenAPIType.STRING, min_length=1, max_length=MAX_TITLE
                            ),
                            "content": text,
                            "content_type": Schema(
                                type=OpenAPIType.STRING, enum=list(TEXT_TYPES), default="text/plain"
                            ),
                        },
                    ),
                    example={"title": "Refunds", "content": "# Refunds\n\nRefunds take 5 days."},
                ),
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["file"],
                        properties={
                            "file": Schema(type=OpenAPIType.STRING, format="binary"),  # type: ignore[arg-type]
                            "title": text,
                        },
                    )
                ),
            },
        )


def _field_error(exc: msgspec.ValidationError) -> ValidationException:
    message, _, where = str(exc).partition(" - at `$.")
    key = where.split("`", 1)[0].split("[", 1)[0]
    return ValidationException(
        "Validation failed", extra=[{"message": message, "key": key, "source": "body"}]
    )


def _title(value: str) -> str:
    title = value.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        raise ValidationException(
            "Validation failed",
            extra=[{"message": f"must be 1 to {MAX_TITLE} characters", "key": "title"}],
        )
    return title


async def read_upload(request: Request[Any, Any, Any]) -> Upload:
    """The document in a JSON body or a multipart form, whichever the client sent."""
    media_type = request.content_type[0]
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = msgspec.json.decode(await request.body(), type=DocumentCreate)
        except msgspec.ValidationError as exc:
            raise _field_error(exc) from None
        except msgspec.DecodeError:
            raise ValidationException("The body is not valid JSON") from None
        return Upload(_title(data.title), data.content, data.content_type)
    if media_type == "multipart/form-data":
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ValidationException(
                "Validation failed", extra=[{"message": "a file is required", "key": "file"}]
            )
        filename = PurePath(file.filename or "").name[:255] or None
        title = form.get("title")
        fallback = PurePath(filename).stem if filename else ""
        return Upload(
            _title(title if isinstance(title, str) and title.strip() else fallback),
            await file.read(),
            content_type_of(filename, file.content_type),
            filename,
        )
    raise HTTPException(
        status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail="Send the document as application/json or multipart/form-data",
    )


def knowledge(db_session: DbSession, principal: Principal, state: State) -> KnowledgeService:
    return KnowledgeService(db_session, principal, state.gemini, state.settings.document_max_bytes)


class KnowledgeBaseController(Controller):
    path = "/knowledge-bases"
    tags = ["knowledge"]

    @post("/", summary="Create a knowledge base (admin)", responses=error_responses(409))
    async def create_knowledge_base(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        data: JSONBody[KnowledgeBaseCreate],
    ) -> KnowledgeBaseOut:
        kb = await knowledge(db_session, principal, state).create_base(data.name)
        return msgspec.convert(kb, KnowledgeBaseOut, from_attributes=True)

    @get("/", summary="List the organization's knowledge bases, oldest first")
    async def list_knowledge_bases(
        self, db_session: DbSession, principal: Caller, state: State
    ) -> KnowledgeBaseList:
        rows = await knowledge(db_session, principal, state).list_bases()
        items = [msgspec.convert(row, KnowledgeBaseOut, from_attributes=True) for row in rows]
        return KnowledgeBaseList(items=items, total=len(items))

    @get("/{kb_id:uuid}", summary="One knowledge base")
    async def get_knowledge_base(
        self, db_session: DbSession, principal: Caller, state: State, kb_id: KnowledgeBaseId
    ) -> KnowledgeBaseOut:
        kb = await knowledge(db_session, principal, state).get_base(kb_id)
        return msgspec.convert(kb, KnowledgeBaseOut, from_attributes=True)

    @post(
        "/{kb_id:uuid}/documents",
        summary="Add a document, or replace the one with the same title (admin)",
        operation_class=DocumentUploadOperation,
        request_max_body_size=UPLOAD_BODY_LIMIT,
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=DocumentOut, description="Replaced the document with that title"
            ),
            **error_responses(413, 415),
        },
    )
    async def add_document(
        self,
        request: Request[Any, Any, Any],
        db_session: DbSession,
        principal: Caller,
        state: State,
        kb_id: KnowledgeBaseId,
    ) -> Response[DocumentOut]:
        service = knowledge(db_session, principal, state)
        # Permission and a known knowledge base are checked before the body is read.
        kb = await service.writable_base(kb_id)
        document, created = await service.add_document(kb, await read_upload(request))
        return Response(
            msgspec.convert(document, DocumentOut, from_attributes=True),
            status_code=HTTP_201_CREATED if created else HTTP_200_OK,
        )

    @get("/{kb_id:uuid}/documents", summary="List a knowledge base's documents, oldest first")
    async def list_documents(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        kb_id: KnowledgeBaseId,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
    ) -> DocumentList:
        rows, total = await knowledge(db_session, principal, state).list_documents(
            kb_id, limit, offset
        )
        items = [msgspec.convert(row, DocumentOut, from_attributes=True) for row in rows]
        return DocumentList(items=items, total=total, limit=limit, offset=offset)

    @get("/{kb_id:uuid}/documents/{document_id:uuid}", summary="One document with its text")
    async def get_document(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        kb_id: KnowledgeBaseId,
        document_id: DocumentId,
    ) -> DocumentDetail:
        document = await knowledge(db_session, principal, state).get_document(kb_id, document_id)
        return msgspec.convert(document, DocumentDetail, from_attributes=True)

    @delete(
        "/{kb_id:uuid}/documents/{document_id:uuid}",
        summary="Delete a document and its chunks (admin)",
    )
    async def delete_document(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        kb_id: KnowledgeBaseId,
        document_id: DocumentId,
    ) -> None:
        await knowledge(db_session, principal, state).delete_document(kb_id, document_id)

    @get(
        "/{kb_id:uuid}/search",
        summary="Retrieve the passages that best match a question, with each method's score",
    )
    async def search(
        self,
        db_session: DbSession,
        principal: Caller,
        state: State,
        kb_id: KnowledgeBaseId,
        q: Annotated[str, Parameter(min_length=1, max_length=4000, description="The question")],
        top_k: Annotated[int, Parameter(ge=1, le=50)] = 10,
    ) -> SearchResults:
        retrieved = await KnowledgeSearch(db_session, principal.org_id, state.gemini).search(
            kb_id, q, top_k
        )
        weights = retrieved.weights
        items = [
            SearchHit(
                chunk_id=result.passage.chunk_id,
                document_id=result.passage.document_id,
                title=result.passage.title,
                heading=result.passage.heading,
                snippet=snippet(result.passage.content, weights),
                score=round(result.score, 4),
                scores=Scores(
                    bm25=round(result.bm25, 4),
                    dense=None if result.dense is None else round(result.dense, 4),
                    fused=round(result.score, 4),
                ),
            )
            for result in retrieved.results
        ]
        return SearchResults(items=items, terms=list(weights), dense=retrieved.dense)


class QueryController(Controller):
    path = "/query"
    tags = ["knowledge"]

    @post(
        "/",
        summary="Answer a question from a knowledge base, citing its sources",
        description=(
            "Without `knowledge_base_id` the organization's oldest knowledge base answers. "
            "`mode` is `generated` (Gemini), `extractive` (sentences of the best passages, when "
            "Gemini is unconfigured, failing or its circuit is open; then `degraded` is true) "
            "or `no_answer` (the knowledge base does not cover the question)."
        ),
        status_code=HTTP_200_OK,
    )
    async def query(
        self, db_session: DbSession, principal: Caller, state: State, data: JSONBody[QueryRequest]
    ) -> QueryAnswer:
        answer = await KnowledgeSearch(db_session, principal.org_id, state.gemini).answer(
            data.question, data.knowledge_base_id, data.top_k, data.conversation_id
        )
        return answer_body(answer)


def answer_body(answer: Answer) -> QueryAnswer:
    return QueryAnswer(
        answer=answer.text,
        mode=answer.mode,
        sources=[
            Source(
                document_id=passage.document_id,
                chunk_id=passage.chunk_id,
                title=passage.title,
                snippet=snippet(passage.content, answer.weights),
                score=round(score, 4),
            )
            for passage, score in answer.sources
        ],
        confidence=answer.confidence,
        degraded=answer.degraded,
    )
