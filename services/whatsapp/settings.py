from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.messaging.settings import MessageServiceSettings


class Settings(MessageServiceSettings):
    service_name: ClassVar[str] = "whatsapp"
    model_config = SettingsConfigDict(env_prefix="CADENCIA_WHATSAPP_", env_nested_delimiter="__", extra="ignore")

    port: int = 8004
    #: WhatsApp's customer-service window: free-form messages are allowed this long after the user's last message.
    window_hours: float = Field(default=24.0, gt=0)
