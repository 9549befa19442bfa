"""OpenAPI pieces shared by every controller: the error body, the error responses, and two
corrections to what Litestar derives (unknown fields, optional bodies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example, Operation, RequestBody

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition

ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "Not allowed for this key",
    404: "Not found (or owned by another organization)",
    409: "Conflicts with the current state",
    410: "Gone: deleted",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Well-formed, but the values do not fit",
    429: "Too many requests",
    503: "A dependency is unavailable; retry after the Retry-After seconds",
}


class ErrorBody(msgspec.Struct):
    status_code: int
    detail: str
    extra: list[dict[str, Any]] | dict[str, Any] | None = None


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(
            data_container=ErrorBody,
            description=ERROR_DESCRIPTIONS[code],
            generate_examples=False,
            examples=[
                Example(
                    summary=ERROR_DESCRIPTIONS[code],
                    value={"status_code": code, "detail": ERROR_DESCRIPTIONS[code]},
                )
            ],
        )
        for code in codes
    }


# Every authenticated API operation can answer these.
API_ERRORS = error_responses(400, 401, 403, 404, 422, 503)


def document_api_errors(app: Litestar, prefix: str) -> None:
    """Declare `API_ERRORS` on every operation under `prefix` (routers cannot declare responses);
    a handler's own declarations win. The schema is generated lazily, after this runs."""
    for route in app.routes:
        if not route.path.startswith(prefix):
            continue
        for handler in getattr(route, "route_handlers", ()):
            handler.responses = {**API_ERRORS, **(handler.responses or {})}


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """A body that refuses unknown fields (`forbid_unknown_fields=True`, a 422) says so in the
    document: `additionalProperties: false`. Litestar leaves it out."""

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


@dataclass
class OptionalBodyOperation(Operation):
    """For a handler whose body has a default (`data: ... = None`): Litestar documents every
    request body as required."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False
