"""``POST /v1/policy/evaluate``: simulate a decision without sending anything."""

from __future__ import annotations

import threading
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.orchestrator.policy.engine import evaluate
from services.orchestrator.policy.packs import Policy, load_policy
from services.orchestrator.policy.schemas import EvaluateRequest, EvaluateResponse

router = APIRouter(prefix="/v1/policy", tags=["policy"])

_shipped: Policy | None = None
_lock = threading.Lock()


def _policy(request: Request) -> Policy:
    policy = getattr(request.app.state, "policy", None)
    if isinstance(policy, Policy):
        return policy
    global _shipped
    with _lock:
        if _shipped is None:
            _shipped = load_policy()
        return _shipped


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{at.microsecond:06d}" if at.microsecond else "") + "Z"


def _iso_z(body: EvaluateResponse) -> dict[str, object]:
    out = body.model_dump(mode="json", exclude_none=True)
    if body.not_before is not None:
        out["not_before"] = _z(body.not_before)
    if body.send_before is not None:
        out["send_before"] = _z(body.send_before)
    return out


@router.post("/evaluate", response_model=EvaluateResponse, response_model_exclude_none=True)
async def evaluate_contact(body: EvaluateRequest, request: Request) -> JSONResponse:
    """The decision for ``contact`` given the debtor, account, history and suppressions."""
    debtor, account, ledger, contact, suppressions, limits = body.to_inputs()
    decision = evaluate(
        debtor, account, ledger, contact, _policy(request), suppressions=suppressions, limits=limits
    )
    return JSONResponse(_iso_z(EvaluateResponse.of(decision)))
