from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.orchestrator.webhooks.settings import WebhookSettings
from shared.config import ServiceSettings

DEV_SELF_SERVICE_SECRET = "dev-self-service-secret"


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "orchestrator"
    model_config = SettingsConfigDict(env_prefix="CADENCIA_ORCHESTRATOR_", env_nested_delimiter="__", extra="ignore")

    port: int = 8000
    consumer_group: str = "cadencia-orchestrator"
    #: Strategy YAML (segments, channel order, gaps, caps); the shipped default when empty.
    strategy_path: str = ""
    #: Extra jurisdiction pack directories, applied over the shipped packs.
    policy_dirs: list[str] = []
    #: Seconds taken off the end of every lawful window (``send_before``): time for the dispatch to
    #: cross Kafka and reach the provider; a window with less than this left counts as closed.
    send_margin_s: float = Field(default=60.0, ge=0, le=3600)
    #: How often the scheduler looks for due deferred contacts (seconds).
    scheduler_interval: float = 1.0
    #: Create Cadencia's topics at startup (idempotent).
    create_topics: bool = True
    #: Seed the shipped template set into an empty store at startup.
    seed_templates: bool = True
    #: Largest ``variables`` object of a contact request (JSON bytes); larger requests are rejected.
    max_variables_bytes: int = Field(default=4096, ge=256)
    #: Dead-lettered payloads up to this size are kept whole in the dead-letter table (for replay);
    #: larger ones keep only their size, SHA-256 and a prefix.
    dead_letter_max_stored_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    #: SMS price per segment by country, ``{"CO": "0.0350 USD"}``, over indicative defaults (editor cost view).
    sms_prices: dict[str, str] = {}
    #: Outgoing webhooks: retry backoff, retry window, timeouts (``CADENCIA_ORCHESTRATOR_WEBHOOKS__BACKOFF_BASE``).
    webhooks: WebhookSettings = WebhookSettings()
    #: Largest portfolio file ``POST /v1/imports`` takes, and where uploads wait (the system temp dir if empty).
    import_max_bytes: int = 512 * 1024 * 1024
    import_dir: str = ""
    #: Test sends of a template version one API key may make per hour.
    test_sends_per_hour: int = 20
    #: HMAC key of the self-service links (``{{ account | self_service_link }}``) and agreement seals.
    self_service_secret: SecretStr = SecretStr(DEV_SELF_SERVICE_SECRET)
    #: Public base URL of the self-service page (a short domain keeps the SMS short); ``public_url`` when empty.
    self_service_url: str = ""

    def development_defaults_in_use(self) -> list[str]:
        bad = super().development_defaults_in_use()
        if self.self_service_secret.get_secret_value() == DEV_SELF_SERVICE_SECRET:
            bad.append("CADENCIA_ORCHESTRATOR_SELF_SERVICE_SECRET")
        return bad
