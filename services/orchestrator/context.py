"""What the orchestrator's handlers and views share: built once by the lifespan, on ``app.state.ctx``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from services.orchestrator.settings import Settings
from shared.bus import EventProducer
from shared.db import Database, OutboxRelay
from shared.events import Topics, utcnow

Clock = Callable[[], datetime]


@dataclass
class OrchestratorContext:
    settings: Settings
    db: Database
    producer: EventProducer
    relay: OutboxRelay
    topics: Topics
    clock: Clock = utcnow
    extras: dict[str, Any] = field(default_factory=dict)


def get_ctx(request: Request) -> OrchestratorContext:
    ctx: OrchestratorContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[OrchestratorContext, Depends(get_ctx)]
