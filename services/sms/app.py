"""``create_app(settings)`` for the SMS service; the lifespan owns every connection."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from services.messaging.app import create_message_app
from services.sms.settings import Settings
from shared.events import utcnow

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: Settings, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    return create_message_app(settings, channel="sms", title="Cadencia SMS", migrations=MIGRATIONS, clock=clock)
