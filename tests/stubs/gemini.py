"""A local Gemini (Generative Language REST API) stand-in.

It answers on the same paths, headers and JSON shapes that the google-genai SDK
uses against ``generativelanguage.googleapis.com``, so the real SDK can be pointed
at it with ``HttpOptions(base_url=stub.base_url)``. Answers and embeddings are
deterministic so tests can assert on them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from tests.stubs.server import ControlledStub, Request, Response

# google.rpc.Code names, which Google puts in error.status next to the HTTP code.
GOOGLE_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Messages as the production API words them, so log-matching code sees real text.
_DEFAULT_MESSAGES: dict[int, str] = {
    400: "Request contains an invalid argument.",
    404: "Requested entity was not found.",
    429: (
        "You exceeded your current quota, please check your plan and billing details. "
        "For more information on this error, head to: "
        "https://ai.google.dev/gemini-api/docs/rate-limits."
    ),
    500: (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    ),
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}

_METHOD_KIND = {
    "generateContent": "generate",
    "streamGenerateContent": "stream_generate",
    "countTokens": "count_tokens",
    "batchEmbedContents": "batch_embed",
    "embedContent": "embed",
}

_ROUTE = re.compile(
    r"^/(?P<version>v1|v1beta|v1alpha)/models"
    r"(?:/(?P<model>[^/:]+)(?::(?P<method>[A-Za-z]+))?)?/?$"
)

DEFAULT_MODELS = (
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
    "gemini-2.0-flash",
    "gemini-embedding-001",
    "text-embedding-004",
)

_TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED",
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)
_MAX_BATCH = 100
_MAX_DIMS = 3072
_PART_DATA_FIELDS = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)


def google_error(
    code: int, message: str | None = None, details: list[Any] | None = None
) -> Response:
    """Build Google's ``{"error": {"code", "message", "status"}}`` envelope."""
    error: dict[str, Any] = {
        "code": code,
        "message": message or _DEFAULT_MESSAGES.get(code, "Unknown error."),
        "status": GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Response.json(code, {"error": error})


def _tokens(text: str) -> list[str]:
    # NFKD splits "ã" into "a" + combining tilde, so dropping combining marks
    # makes "não" and "nao" hash to the same bucket.
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.findall(r"\w+", folded)


def hashed_embedding(text: str, dims: int = 256) -> list[float]:
    """Deterministic L2-normalised hashed bag-of-words vector for ``text``.

    Texts sharing words share buckets, so cosine similarity tracks word overlap,
    which is all retrieval tests need. Exposed so tests can compute expectations.
    """
    words = _tokens(text) or ([text.strip()] if text.strip() else [])
    vector = [0.0] * dims
    # Unsigned buckets on purpose: a random sign could cancel colliding words
    # and hand back an all-zero vector, which has no cosine at all.
    for word, count in Counter(words).items():
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        vector[digest % dims] += count
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


_SOURCE_START = re.compile(r"^[ \t]*\[(\d+)\][ \t]*", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def numbered_sources(prompt: str) -> dict[int, str]:
    """Map source number to its text, for lines that start with ``[n]``.

    Only line-leading markers count, so an instruction such as "cite like [1]"
    is not mistaken for a source. A source runs until the next marker.
    """
    starts = list(_SOURCE_START.finditer(prompt))
    sources: dict[int, str] = {}
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(prompt)
        body = " ".join(prompt[match.end() : end].split())
        sources.setdefault(int(match.group(1)), body)
    return sources


def grounded_answer(prompt: str) -> str:
    """Default reply: the first sentence of source [1] plus its citation."""
    source = numbered_sources(prompt).get(1, "")
    if not source:
        return "I don't know."
    first_sentence = _SENTENCE_END.split(source, maxsplit=1)[0]
    return f"{first_sentence} [1]"


def _content_texts(content: Any) -> list[str]:
    if not isinstance(content, dict):
        return []
    parts = content.get("parts") or []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def prompt_text(body: Any) -> str:
    """All text the model would see: systemInstruction first, then every content."""
    if not isinstance(body, dict):
        return ""
    texts = _content_texts(body.get("systemInstruction"))
    for content in body.get("contents") or []:
        texts.extend(_content_texts(content))
    return "\n".join(texts)


def _estimate_tokens(text: str) -> int:
    # Roughly four characters per token, which is what Gemini bills for English.
    return math.ceil(len(text) / 4)


def _display_name(model: str) -> str:
    return " ".join(w.capitalize() for w in model.split("-"))


def _is_embedding_model(model: str) -> bool:
    return "embedding" in model


def model_metadata(model: str) -> dict[str, Any]:
    """A ``Model`` resource in the shape GET /models returns."""
    if _is_embedding_model(model):
        return {
            "name": f"models/{model}",
            "version": "001",
            "displayName": _display_name(model),
            "description": "Obtain a distributed representation of a text.",
            "inputTokenLimit": 2048,
            "outputTokenLimit": 1,
            "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens"],
        }
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": _display_name(model),
        "description": f"Stub of {model}.",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


class GeminiStub(ControlledStub):
    """Gemini API stand-in; see the module docstring.

    ``models=None`` accepts any model id (with the default catalogue listed);
    passing a list makes unknown ids 404 like the real API. Failure modes and
    ``fail_next`` hit only quota-spending calls, never GET /models.
    """

    MODES = ("ok", "429", "503", "500", "slow")
    FAIL_STATUSES = frozenset(GOOGLE_STATUS)

    def __init__(
        self,
        api_key: str = "test-gemini-key",
        *,
        models: Iterable[str] | None = None,
        embedding_dims: int = 256,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.strict_models = models is not None
        self.models: tuple[str, ...] = tuple(models) if models is not None else DEFAULT_MODELS
        self.embedding_dims = embedding_dims
        self.retry_delay_seconds = 1
        self.reply_fn: Callable[[str], str] | None = None

    def reply_with(self, text: str) -> None:
        """Answer every generate call with ``text``."""
        self.reply_fn = lambda _prompt: text

    def _reset_locked(self) -> None:
        self.reply_fn = None

    @property
    def last_prompt(self) -> str | None:
        """Prompt text of the most recent generate call, as the reply logic saw it."""
        for req in reversed(self.requests):
            if req.method == "POST" and req.path.endswith(("generateContent", "GenerateContent")):
                return prompt_text(req.body)
        return None

    async def _handle(self, request: Request) -> Response:
        route = _ROUTE.match(request.path)
        kind = self._kind(request.method, route)
        body = self._record(request, kind)

        auth_error = self._check_key(request)
        if auth_error:
            return auth_error
        if route is None or kind is None:
            return google_error(404, "Method not found.")
        version, model = route["version"], route["model"]
        if kind == "list_models":
            return Response.json(200, {"models": [model_metadata(m) for m in self.models]})
        if kind == "get_model":
            if self.strict_models and model not in self.models:
                return google_error(404, f"models/{model} is not found for API version {version}")
            return Response.json(200, model_metadata(model))

        if not isinstance(body, dict):
            return google_error(
                400, "Invalid JSON payload received. Expected an object at the top level."
            )
        failure = await self._failure_response()
        if failure:
            return failure
        not_found = self._check_model(version, model, route["method"])
        if not_found:
            return not_found
        if kind in ("generate", "stream_generate"):
            return self._generate(
                body, model, stream=kind == "stream_generate", query=request.query
            )
        if kind == "count_tokens":
            return self._count_tokens(body)
        if kind == "batch_embed":
            return self._batch_embed(body, model)
        return self._embed_one(body, model)

    @staticmethod
    def _kind(method: str, route: re.Match[str] | None) -> str | None:
        if route is None:
            return None
        if method == "GET" and route["method"] is None:
            return "get_model" if route["model"] else "list_models"
        if method == "POST" and route["model"] and route["method"]:
            return _METHOD_KIND.get(route["method"])
        return None

    def _check_key(self, request: Request) -> Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return google_error(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API.",
            )
        if key != self.api_key:
            message = "API key not valid. Please pass a valid API key."
            return google_error(
                400,
                message,
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": message,
                    },
                ],
            )
        return None

    async def _failure_response(self) -> Response | None:
        status = await self._injected_failure()
        if status is None:
            return None
        if status == 429:
            # RetryInfo is what clients parse to honour Google's back-off hint.
            return google_error(
                429,
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_free_tier_requests",
                                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                "quotaValue": "10",
                            }
                        ],
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{self.retry_delay_seconds}s",
                    },
                ],
            )
        return google_error(status)

    def _check_model(self, version: str, model: str, method: str) -> Response | None:
        wants_embedding = method in ("batchEmbedContents", "embedContent")
        known = not self.strict_models or model in self.models
        # countTokens works on both families; everything else is family-specific.
        fits = method == "countTokens" or wants_embedding == _is_embedding_model(model)
        if known and fits:
            return None
        return google_error(
            404,
            f"models/{model} is not found for API version {version}, or is not supported "
            f"for {method}. Call ListModels to see the list of available models and their "
            "supported methods.",
        )

    @staticmethod
    def _invalid_contents(body: dict[str, Any], field: str) -> Response | None:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return google_error(400, f"* {field}.contents: contents is not specified\n")
        for i, content in enumerate(contents):
            if not isinstance(content, dict):
                return google_error(400, f"Invalid value at 'contents[{i}]'")
            if content.get("role") not in (None, "user", "model", "function"):
                return google_error(400, "Please use a valid role: user, model.")
            for j, part in enumerate(content.get("parts") or []):
                if not isinstance(part, dict) or not any(k in part for k in _PART_DATA_FIELDS):
                    return google_error(
                        400,
                        f"* {field}.contents[{i}].parts[{j}].data: required oneof field "
                        "'data' must have one initialized field\n",
                    )
        return None

    def _generate(
        self, body: dict[str, Any], model: str, *, stream: bool, query: dict[str, str]
    ) -> Response:
        invalid = self._invalid_contents(body, "GenerateContentRequest")
        if invalid:
            return invalid
        prompt = prompt_text(body)
        reply_fn = self.reply_fn or grounded_answer
        try:
            answer = reply_fn(prompt)
        except Exception as exc:  # surface test bugs as a visible API error
            return google_error(500, f"stub reply_fn raised {exc!r}")
        prompt_tokens = _estimate_tokens(prompt)
        answer_tokens = _estimate_tokens(answer)
        response_id = secrets.token_urlsafe(16)

        def chunk(text: str, last: bool, produced: int) -> dict[str, Any]:
            candidate: dict[str, Any] = {
                "content": {"parts": [{"text": text}], "role": "model"},
                "index": 0,
            }
            if last:
                candidate["finishReason"] = "STOP"
            return {
                "candidates": [candidate],
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": produced,
                    "totalTokenCount": prompt_tokens + produced,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                },
                "modelVersion": model,
                "responseId": response_id,
            }

        if not stream:
            return Response.json(200, chunk(answer, True, answer_tokens))

        pieces = _split_for_stream(answer)
        produced = 0
        chunks = []
        for i, piece in enumerate(pieces):
            produced += _estimate_tokens(piece)
            chunks.append(chunk(piece, i == len(pieces) - 1, produced))
        if query.get("alt") == "sse":
            events = "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks)
            return Response.text(200, events, "text/event-stream")
        # Without alt=sse the real endpoint streams one JSON array.
        return Response.json(200, chunks)

    def _count_tokens(self, body: dict[str, Any]) -> Response:
        inner = body.get("generateContentRequest")
        total = _estimate_tokens(prompt_text(inner if isinstance(inner, dict) else body))
        return Response.json(
            200,
            {
                "totalTokens": total,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            },
        )

    def _embed_values(
        self, request: Any, model: str, where: str
    ) -> tuple[list[float] | None, Response | None]:
        if not isinstance(request, dict):
            return None, google_error(400, f"Invalid value at '{where}'")
        req_model = request.get("model")
        if req_model is not None and req_model not in (model, f"models/{model}"):
            return None, google_error(
                400,
                f"Model '{req_model}' in {where} does not match the model in the request URL "
                f"(models/{model}).",
            )
        task_type = request.get("taskType")
        if task_type is not None and task_type not in _TASK_TYPES:
            return None, google_error(
                400,
                f"Invalid value at '{where}.task_type' "
                "(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), "
                f'"{task_type}"',
            )
        dims = request.get("outputDimensionality", self.embedding_dims)
        if not isinstance(dims, int) or not 0 < dims <= _MAX_DIMS:
            return None, google_error(
                400, f"* {where}.output_dimensionality: must be between 1 and {_MAX_DIMS}\n"
            )
        text = " ".join(_content_texts(request.get("content"))).strip()
        if not text:
            return None, google_error(
                400,
                f"* {where}.content.parts: contents must not be empty\n",
            )
        return hashed_embedding(text, dims), None

    def _batch_embed(self, body: dict[str, Any], model: str) -> Response:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return google_error(
                400, "* BatchEmbedContentsRequest.requests: requests is not specified\n"
            )
        if len(requests) > _MAX_BATCH:
            return google_error(
                400,
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
            )
        embeddings = []
        for i, req in enumerate(requests):
            values, error = self._embed_values(req, model, f"requests[{i}]")
            if error:
                return error
            embeddings.append({"values": values})
        return Response.json(200, {"embeddings": embeddings})

    def _embed_one(self, body: dict[str, Any], model: str) -> Response:
        values, error = self._embed_values(body, model, "EmbedContentRequest")
        if error:
            return error
        return Response.json(200, {"embedding": {"values": values}})


def _split_for_stream(answer: str, pieces: int = 3) -> list[str]:
    """Cut at word boundaries so concatenating the chunks restores the answer exactly."""
    words = re.findall(r"\S+\s*", answer)
    if len(words) < pieces:
        return [answer]
    size = math.ceil(len(words) / pieces)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]
