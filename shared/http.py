"""HTTP plumbing shared by every service: RFC 9457 problem+json errors and bearer API-key auth."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.config import ApiKeyIdentity, Role
from shared.logging import get_logger

log = get_logger(__name__)

PROBLEM = "application/problem+json"

#: Largest integer every database we run on stores (SQLite INTEGER, PostgreSQL BIGINT). Integer
#: path and query parameters are bounded by it (or less) so a fuzzed value is a 422, never a 500.
DB_INT_MAX = 2**63 - 1
#: PostgreSQL INTEGER columns (template versions, counters).
INT32_MAX = 2**31 - 1
#: A row id in a path: ``/v1/dlq/{letter_id}``.
RowId = Annotated[int, Path(ge=1, le=DB_INT_MAX)]
#: A version number in a path (stored as INTEGER).
VersionNumber = Annotated[int, Path(ge=1, le=INT32_MAX)]
#: An optional "before this id" cursor in a query.
BeforeId = Annotated[int | None, Query(ge=1, le=DB_INT_MAX)]
_RANK: dict[str, int] = {"viewer": 0, "editor": 1, "admin": 2}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _in_utc(value: datetime) -> datetime:
    try:
        return _utc(value).astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before the first representable instant in UTC
        raise ValueError("the instant is out of range in UTC (years 1 to 9999)") from exc


#: A datetime a request gives: read as UTC when it has no offset, refused (422) when it cannot be
#: represented in UTC (``0001-01-01T00:00:00+01:00``), instead of failing deep inside a query.
UtcInstant = Annotated[datetime, AfterValidator(_in_utc)]
#: The same for a request field that must carry its offset.
AwareUtcInstant = Annotated[AwareDatetime, AfterValidator(_in_utc)]

#: A datetime an answer carries with its offset: SQLite gives naive UTC back, and a ``date-time`` in
#: JSON without an offset is not RFC 3339 (what OpenAPI's ``format: date-time`` promises clients).
UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


class ProblemDetails(BaseModel):
    """RFC 9457 problem details: every error answer of every service (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


#: Declared on routers so OpenAPI (and a generated client) knows the error bodies.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "description": description}
    for status, description in (
        (401, "No or an unknown bearer API key"),
        (403, "The key's role is not enough"),
        (404, "Not found"),
        (422, "Invalid request (the fields in `errors`)"),
    )
}


#: Every client error of every route: ``install_problem_handlers`` turns each into a problem body.
CLIENT_ERRORS = "4XX"
_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make an OpenAPI document say what the services really answer on errors.

    FastAPI documents its 422 as an ``application/json`` ``HTTPValidationError`` and knows nothing of
    the 400 (undecodable body), 401/403 (keys), 404, 413 (body limit) or 415 a route can answer. Every
    one of those is an ``application/problem+json`` :class:`ProblemDetails` (``install_problem_handlers``):
    each declared problem answer says so, and each operation gets a ``4XX`` range for the rest, unless it
    declares its own (the sandbox's provider APIs answer in the provider's error format).
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ProblemDetails", ProblemDetails.model_json_schema())
    problem = {"application/problem+json": {"schema": _PROBLEM_REF}}
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch", "head", "options"):
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if str(status).startswith("4") and _is_problem(response):
                    response["content"] = dict(problem)
            responses.setdefault(CLIENT_ERRORS, {"description": "A client error, as a problem (RFC 9457)",
                                                 "content": dict(problem)})
    for unused in ("HTTPValidationError", "ValidationError"):
        rest = {k: v for k, v in components.items() if k != unused}
        if unused in components and f"/{unused}\"" not in json.dumps([schema.get("paths", {}), rest]):
            del components[unused]
    return schema


def _is_problem(response: dict[str, Any]) -> bool:
    """A declared error answer FastAPI documented as JSON that is really one of our problems (its
    validation error, a ``ProblemDetails`` model) or has no body declared; not a route's own format."""
    content = response.get("content") or {}
    if not content:
        return True
    text = json.dumps(content)
    return list(content) == ["application/json"] and ("/ProblemDetails" in text or "/HTTPValidationError" in text)


class Problem(Exception):
    """Raise from anywhere in a request to answer with a problem+json body."""

    def __init__(
        self, status: int, title: str, detail: str | None = None, type_: str = "about:blank", **extra: Any
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type, self.extra = status, title, detail, type_, extra


def problem_response(
    status: int, title: str, detail: str | None = None, type_: str = "about:blank", **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error (validation, HTTP, ``Problem``, unexpected) as problem+json."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.title, exc.detail, exc.type, **exc.extra)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        return problem_response(
            422, "Invalid request", f"invalid field(s): {fields}", "/problems/validation", errors=errors
        )

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        return problem_response(exc.status_code, title)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: logged with its traceback, answered as a typed problem (no details).
        log.exception("unhandled error in a request", method=request.method, route=_route(request),
                      error=type(exc).__name__)
        return problem_response(500, "Internal Server Error", type_="/problems/internal")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "") or "<unmatched>")


#: Declares the bearer scheme in OpenAPI (``components.securitySchemes.bearer``); errors are ours.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="An API key from CADENCIA_API_KEYS: `Authorization: Bearer <key>`.",
)


def require_key(minimum: Role) -> Callable[..., Awaitable[ApiKeyIdentity]]:
    """Dependency: the identity of a bearer API key whose role is at least ``minimum``.

    Keys are compared in constant time against every configured key.
    """

    async def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
    ) -> ApiKeyIdentity:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Problem(401, "Unauthorized", "a bearer API key is required", "/problems/unauthorized")
        token = credentials.credentials
        keys: dict[str, ApiKeyIdentity] = request.app.state.api_keys
        found: ApiKeyIdentity | None = None
        for key, identity in keys.items():
            # Compare against every key so timing does not reveal which prefix matched.
            if hmac.compare_digest(key.encode(), token.encode()):
                found = identity
        if found is None:
            raise Problem(401, "Unauthorized", "unknown API key", "/problems/unauthorized")
        if _RANK[found.role] < _RANK[minimum]:
            raise Problem(403, "Forbidden", f"role {minimum} required", "/problems/forbidden")
        return found

    return check


def require_role(minimum: Role) -> Callable[..., Awaitable[Role]]:
    """Dependency: the role of a bearer API key whose role is at least ``minimum``."""
    key_check = require_key(minimum)

    async def check(identity: ApiKeyIdentity = Depends(key_check)) -> Role:
        return identity.role

    return check


ViewerDep = Annotated[Role, Depends(require_role("viewer"))]
EditorDep = Annotated[Role, Depends(require_role("editor"))]
AdminDep = Annotated[Role, Depends(require_role("admin"))]
#: Who is making the request (name, role, four-eyes), for the records of who changed what.
EditorKeyDep = Annotated[ApiKeyIdentity, Depends(require_key("editor"))]
ViewerKeyDep = Annotated[ApiKeyIdentity, Depends(require_key("viewer"))]
AdminKeyDep = Annotated[ApiKeyIdentity, Depends(require_key("admin"))]
