"""``create_app(settings)`` for the WhatsApp service; the lifespan owns every connection."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.messaging.app import ChannelHooks, create_message_app
from services.whatsapp.settings import Settings
from services.whatsapp.windows import WindowStore
from shared.db import Database

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: Settings) -> FastAPI:
    def hooks(db: Database) -> ChannelHooks:
        windows = WindowStore(db, settings.window_hours)
        return ChannelHooks(window_open=windows.is_open, on_inbound=windows.touch)

    return create_message_app(
        settings, channel="whatsapp", title="Cadencia WhatsApp", migrations=MIGRATIONS, hooks=hooks
    )
