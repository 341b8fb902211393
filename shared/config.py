"""Settings: one ``BaseSettings`` per service, built from the nested sections defined here.

Conventional variable names (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``TWILIO_ACCOUNT_SID``,
``TWILIO_AUTH_TOKEN``, ``SENDGRID_API_KEY``, ``CADENCIA_ENV``, ``CADENCIA_API_KEYS``) are read by every
service; ``<SERVICE>_KAFKA_BOOTSTRAP_SERVERS`` / ``<SERVICE>_DATABASE_URL`` override them for one service,
and ``CADENCIA_<SERVICE>_<SECTION>__<FIELD>`` sets any nested field.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

Environment = Literal["development", "test", "production"]
Role = Literal["viewer", "editor", "admin"]

DEV_API_KEYS = "admin:dev-admin-key"
DEV_TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"
DEV_SENDGRID_API_KEY = "SG.dev-sendgrid-api-key"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "cadencia."
    client_id: str = "cadencia"
    #: The embedded broker long-polls by sleeping; Kafka answers as soon as data arrives.
    fetch_max_wait_ms: int = 10
    max_poll_records: int = 500
    partitions: int = 6
    replication_factor: int = 1
    linger_ms: int = 5
    #: Concurrent partitions handled per consumer batch (one partition is always sequential).
    partition_concurrency: int = 8
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    request_timeout_ms: int = 30_000


class DatabaseSettings(BaseModel):
    url: str = ""
    echo: bool = False
    pool_size: int = 10


class TwilioSettings(BaseModel):
    account_sid: str = DEV_TWILIO_ACCOUNT_SID
    auth_token: SecretStr = SecretStr(DEV_TWILIO_AUTH_TOKEN)
    #: Where the REST API lives: the sandbox locally, ``https://api.twilio.com`` in production.
    base_url: str = "http://127.0.0.1:8090"


class SendGridSettings(BaseModel):
    api_key: SecretStr = SecretStr(DEV_SENDGRID_API_KEY)
    base_url: str = "http://127.0.0.1:8090"
    #: Base64 DER public key of the signed event webhook; empty means "fetch from the sandbox".
    webhook_public_key: str = ""


class ConventionalEnvSource(PydanticBaseSettingsSource):
    """Reads the conventional, unprefixed variable names every service shares."""

    def __init__(self, settings_cls: type[BaseSettings], service: str) -> None:
        super().__init__(settings_cls)
        self.service = service.upper()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def _first(self, *names: str) -> str | None:
        for name in names:
            value = os.environ.get(name)
            if value:
                return value
        return None

    def __call__(self) -> dict[str, Any]:
        s = self.service
        found: dict[str, Any] = {}
        fields = self.settings_cls.model_fields

        def put(section: str, key: str, value: str | None) -> None:
            if value is not None and section in fields:
                found.setdefault(section, {})[key] = value

        put("kafka", "bootstrap_servers", self._first(f"{s}_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"))
        put("kafka", "topic_prefix", self._first("CADENCIA_TOPIC_PREFIX"))
        put("database", "url", self._first(f"{s}_DATABASE_URL", "DATABASE_URL"))
        put("twilio", "account_sid", self._first("TWILIO_ACCOUNT_SID"))
        put("twilio", "auth_token", self._first("TWILIO_AUTH_TOKEN"))
        put("twilio", "base_url", self._first("TWILIO_API_BASE_URL"))
        put("sendgrid", "api_key", self._first("SENDGRID_API_KEY"))
        put("sendgrid", "base_url", self._first("SENDGRID_API_BASE_URL"))
        put("sendgrid", "webhook_public_key", self._first("SENDGRID_WEBHOOK_PUBLIC_KEY"))
        env = self._first("CADENCIA_ENV")
        if env:
            found["env"] = env
        keys = self._first("CADENCIA_API_KEYS")
        if keys and "api_keys" in fields:
            found["api_keys"] = keys
        return found


class ServiceSettings(BaseSettings):
    """Base for every service's settings. Subclasses set ``service_name`` and ``model_config``."""

    service_name: ClassVar[str] = "service"

    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    #: The URL providers reach this service at (webhook signatures are computed over it).
    public_url: str = ""
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    #: ``role:key,role:key``; roles are viewer, editor, admin.
    api_keys: SecretStr = SecretStr(DEV_API_KEYS)
    max_body_bytes: int = 1_000_000

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            ConventionalEnvSource(settings_cls, cls.service_name),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _defaults(self) -> ServiceSettings:
        if not self.database.url:
            self.database.url = f"sqlite+aiosqlite:///./var/{self.service_name}.db"
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        if self.env == "production":
            bad = self.development_defaults_in_use()
            if bad:
                raise ValueError(
                    "refusing to start in production with development defaults for: " + ", ".join(bad)
                )
        return self

    def development_defaults_in_use(self) -> list[str]:
        """Names of secrets still at their development default; extended by services."""
        bad = []
        if "dev-admin-key" in self.api_keys.get_secret_value():
            bad.append("CADENCIA_API_KEYS")
        twilio = getattr(self, "twilio", None)
        if isinstance(twilio, TwilioSettings) and twilio.auth_token.get_secret_value() == DEV_TWILIO_AUTH_TOKEN:
            bad.append("TWILIO_AUTH_TOKEN")
        sendgrid = getattr(self, "sendgrid", None)
        if isinstance(sendgrid, SendGridSettings) and (
            sendgrid.api_key.get_secret_value() == DEV_SENDGRID_API_KEY
        ):
            bad.append("SENDGRID_API_KEY")
        return bad

    def role_by_key(self) -> dict[str, Role]:
        """Parse ``CADENCIA_API_KEYS`` into ``{key: role}``."""
        parsed: dict[str, Role] = {}
        for item in self.api_keys.get_secret_value().split(","):
            item = item.strip()
            if not item:
                continue
            role, sep, key = item.partition(":")
            if not sep or role not in ("viewer", "editor", "admin") or not key:
                raise ValueError(f"CADENCIA_API_KEYS entry must be role:key, got role {role!r}")
            parsed[key] = role  # type: ignore[assignment]
        return parsed
