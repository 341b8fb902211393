"""HTTP plumbing shared by every service: RFC 9457 problem+json errors and bearer API-key auth."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.config import Role

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

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def require_role(minimum: Role) -> Callable[[Request], Awaitable[Role]]:
    """Dependency: a bearer API key whose role is at least ``minimum``; compared in constant time."""

    async def check(request: Request) -> Role:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "Unauthorized", "a bearer API key is required", "/problems/unauthorized")
        keys: dict[str, Role] = request.app.state.api_keys
        role: Role | None = None
        for key, key_role in keys.items():
            # Compare against every key so timing does not reveal which prefix matched.
            if hmac.compare_digest(key.encode(), token.encode()):
                role = key_role
        if role is None:
            raise Problem(401, "Unauthorized", "unknown API key", "/problems/unauthorized")
        if _RANK[role] < _RANK[minimum]:
            raise Problem(403, "Forbidden", f"role {minimum} required", "/problems/forbidden")
        return role

    return check


ViewerDep = Annotated[Role, Depends(require_role("viewer"))]
EditorDep = Annotated[Role, Depends(require_role("editor"))]
AdminDep = Annotated[Role, Depends(require_role("admin"))]
