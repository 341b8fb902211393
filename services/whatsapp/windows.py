"""Each number's 24-hour customer-service window, opened by its inbound messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import DateTime, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, Database
from shared.events import utcnow


class WhatsAppWindow(Base):
    __tablename__ = "whatsapp_windows"

    #: The bare E.164 number (without ``whatsapp:``).
    address: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_inbound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WindowStore:
    def __init__(self, db: Database, hours: float = 24.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.length, self.clock = db, timedelta(hours=hours), clock

    async def is_open(self, address: str) -> bool:
        async with self.db.sessions() as session:
            last = await session.scalar(select(WhatsAppWindow.last_inbound_at).where(WhatsAppWindow.address == address))
        if last is None:
            return False
        if last.tzinfo is None:  # SQLite returns naive UTC
            last = last.replace(tzinfo=self.clock().tzinfo)
        return self.clock() - last < self.length

    async def touch(self, session: AsyncSession, address: str, at: datetime) -> None:
        """Called in the inbound message's transaction: the window reopens for 24 hours."""
        row = await session.get(WhatsAppWindow, address, with_for_update=True)
        if row is None:
            session.add(WhatsAppWindow(address=address, last_inbound_at=at))
        else:
            row.last_inbound_at = at
