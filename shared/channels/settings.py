"""Settings every channel service shares: the provider requests' policy (``SendingSettings``) and the
base of each channel service's ``Settings`` (``ChannelServiceSettings``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator

from shared.config import DEV_ORCHESTRATOR_API_KEY, ServiceSettings
from shared.providers.http import ClientOptions


class SendingSettings(BaseModel):
    """Provider requests: timeouts, concurrency and the retry policy for transient failures."""

    #: Provider requests in flight per process (across all partitions and senders).
    max_in_flight: int = Field(default=32, ge=1)
    #: Dispatches claimed (``sending`` committed) and not yet recorded, per process: a provider request
    #: ends in milliseconds but its result waits for a group commit, so the claim window is wider than
    #: the request window, or the database's round trips would idle the provider connections. It bounds
    #: what a killed process can leave behind: at most this many dispatches reported ``unknown`` (never
    #: resent; a later provider callback still proves them sent). At least ``max_in_flight``.
    max_claimed: int = Field(default=256, ge=1)
    #: Seconds to wait for the provider's answer once the request is sent; past it the send is ``unknown``.
    request_timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    #: Exponential backoff with jitter: ``min(cap, base * 2**attempt)``, half of it randomised.
    retry_base_s: float = Field(default=0.2, gt=0)
    retry_cap_s: float = Field(default=30.0, gt=0)
    #: How long a send may retry inside its consumer batch; a retry due later is handed to the durable
    #: retry path (``shared.channels.deferred``), so one stuck send never holds back its partition.
    inline_retry_s: float = Field(default=5.0, gt=0)
    #: How often the durable retry path looks for due sends, and how many it resumes per pass.
    retry_poll_s: float = Field(default=1.0, gt=0)
    retry_batch: int = Field(default=100, ge=1, le=10_000)
    #: A message accepted by the provider with no final status after this long (its callbacks were
    #: lost, e.g. they hit this service while it was down) is looked up at the provider.
    reconcile_after_s: float = Field(default=600.0, gt=0)
    #: How often the reconciler looks for such messages, and how many it asks about per pass.
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    reconcile_batch: int = Field(default=100, ge=1, le=10_000)
    #: Still no final status this long after it was sent: finalised as ``unknown`` (never re-sent).
    give_up_after_s: float = Field(default=72 * 3600.0, gt=0)

    def client_options(self) -> ClientOptions:
        """The provider client's timeouts and connection cap (one connection per send in flight)."""
        return ClientOptions(timeout=self.request_timeout_s, connect_timeout=self.connect_timeout_s,
                             max_connections=self.max_in_flight)


class ChannelServiceSettings(ServiceSettings):
    """The fields of every channel service (SMS, WhatsApp, email, voice); each subclasses it with its
    ``service_name``, ``env_prefix``, port and provider sections."""

    receives_webhooks: ClassVar[bool] = True

    sending: SendingSettings = Field(default_factory=SendingSettings)
    #: The orchestrator's template API, asked when a pinned version is not in the templates topic.
    orchestrator_url: str = Field(
        default="http://127.0.0.1:8000", validation_alias=AliasChoices("orchestrator_url", "CADENCIA_ORCHESTRATOR_URL")
    )
    #: A viewer key of the orchestrator's API (``CADENCIA_API_KEYS`` there).
    orchestrator_api_key: SecretStr = Field(
        default=SecretStr(DEV_ORCHESTRATOR_API_KEY),
        validation_alias=AliasChoices("orchestrator_api_key", "CADENCIA_ORCHESTRATOR_API_KEY"),
    )
    #: The dispatch consumer's group; ``cadencia-<service>`` when empty.
    consumer_group: str = ""
    #: Create Cadencia's topics at startup (idempotent).
    create_topics: bool = True

    @model_validator(mode="after")
    def _channel_defaults(self) -> ChannelServiceSettings:
        if not self.consumer_group:
            self.consumer_group = f"cadencia-{self.service_name}"
        return self
