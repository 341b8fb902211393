from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from services.messaging.settings import MessageServiceSettings


class Settings(MessageServiceSettings):
    service_name: ClassVar[str] = "sms"
    model_config = SettingsConfigDict(env_prefix="CADENCIA_SMS_", env_nested_delimiter="__", extra="ignore")

    port: int = 8001
