"""Settings: one ``BaseSettings`` per service, built from the nested sections defined here.

Conventional variable names (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``TWILIO_ACCOUNT_SID``,
``TWILIO_AUTH_TOKEN``, ``SENDGRID_API_KEY``, ``CADENCIA_ENV``, ``CADENCIA_API_KEYS``) are read by every
service; ``<SERVICE>_KAFKA_BOOTSTRAP_SERVERS`` / ``<SERVICE>_DATABASE_URL`` override them for one service,
and ``CADENCIA_<SERVICE>_<SECTION>__<FIELD>`` sets any nested field.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

Environment = Literal["development", "test", "production"]
Role = Literal["viewer", "editor", "admin"]

DEV_API_KEYS = "admin:dev-admin-key"
DEV_TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"
DEV_SENDGRID_API_KEY = "SG.dev-sendgrid-api-key"
#: The orchestrator key channel services use in development (a key of ``DEV_API_KEYS``).
DEV_ORCHESTRATOR_API_KEY = "dev-admin-key"
#: Where ``make run`` and the tests serve the provider sandbox; production never points here.
SANDBOX_URL = "http://127.0.0.1:8090"


def is_public_https(url: str) -> bool:
    """True for an ``https`` URL whose host is neither loopback, unspecified nor ``localhost``:
    what a provider on the internet can call back, or a production provider API."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (address.is_loopback or address.is_unspecified)


DAY_MS = 86_400_000

#: The part of ``max_poll_interval_ms`` a paced consumer's batch is sized to take at its nominal rate.
PACED_SHARE = 0.25


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "cadencia."
    client_id: str = "cadencia"
    #: The embedded broker long-polls by sleeping; Kafka answers as soon as data arrives.
    fetch_max_wait_ms: int = 10
    #: The same for consumers of rare records whose latency does not matter (the templates topic, dead
    #: letters): an idle consumer at 10 ms sends 100 fetches a second, a few percent of a core each.
    idle_fetch_max_wait_ms: int = 500
    #: A hot-path consumer that found no record for a whole poll (100 ms) long-polls this long until
    #: records come again (0: never): an idle consumer at 10 ms cost about 4% of a core. A record
    #: reaching a consumer that was idle waits at most this long before it is fetched.
    quiet_fetch_max_wait_ms: int = Field(default=40, ge=0)
    max_poll_records: int = 500
    #: A batch consumer whose fetch brought fewer than ``batch_linger_below`` records waits this long
    #: once for more before handling them (0: never), while records flow (its previous fetch with
    #: records came less than ``batch_linger_flowing_ms`` before). Each batch pays fixed work (its
    #: crash-log write, reads, claim and group commits, the relay pass, the offset commit); a steady
    #: stream otherwise pays it every few records: at 200 requests/s the orchestrator spent a third
    #: less CPU per request with 30 ms than with none, the SMS service a sixth (docs/benchmarks.md,
    #: twelfth round); at 145/s 100 ms saved another 10–15% of both, and at 233/s the system kept up
    #: more often, with no p99 cost; 200 ms did worse than 100 (thirteenth round).
    #: Adds at most this much latency per hop, to small batches of a stream only.
    batch_linger_ms: int = Field(default=100, ge=0, le=1_000)
    batch_linger_below: int = Field(default=64, ge=1)
    batch_linger_flowing_ms: int = Field(default=5_000, ge=0)
    #: Records per batch by consumer name (``{"voice-dispatch": 75}``); ``max_poll_records`` for the others.
    #: A consumer whose records take long (paced calls) gets batches it finishes well within
    #: ``max_poll_interval_ms``.
    batch_sizes: dict[str, int] = Field(default_factory=dict)
    #: Longest a consumer may take between two polls (one batch) before it is taken for dead: the
    #: client leaves the group, its partitions move and its batch is redelivered to the next owner.
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    #: Partitions of a topic Cadencia creates, unless ``topic_partitions`` names it (by its name without
    #: the prefix, e.g. ``{"dispatch.sms": 12}``); docs/scaling.md gives the production counts and why.
    partitions: int = 6
    topic_partitions: dict[str, int] = Field(default_factory=dict)
    replication_factor: int = 1
    linger_ms: int = 5
    #: Concurrent partitions handled per consumer batch (one partition is always sequential).
    partition_concurrency: int = 8
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    request_timeout_ms: int = 30_000
    #: Largest event accepted from a topic (encoded bytes); larger records are dead-lettered unread.
    #: Well under the broker's and producer's message limit (1 MB by default), so any record we
    #: accept can be republished, and a dead letter (bounded by this too) can always be produced.
    max_event_bytes: int = Field(default=256 * 1024, ge=1024, le=900 * 1024)
    #: After a crash a consumer handles the records it had in hand one at a time; a record that
    #: crashed it this many times when handled alone is dead-lettered on its next attempt
    #: (attempts are counted in the service database, across restarts). Two: a record in hand when
    #: the process is killed twice in a row (the second time while retried alone) is not poison.
    max_crash_attempts: int = Field(default=2, ge=1)
    #: How long the brokers keep records (the topics' ``retention.ms``; Kafka's default is 7 days). A
    #: redelivered record can only be one the broker still holds, so the de-duplication tables
    #: (``RetentionSettings``) must keep their rows longer than this.
    broker_retention_ms: int = Field(default=7 * DAY_MS, ge=60_000)


    def max_poll_records_for(self, consumer: str) -> int:
        """The batch size of ``consumer`` (a ``ConsumerRunner`` name)."""
        return self.batch_sizes.get(consumer, self.max_poll_records)

    def paced_batch_size(self, per_second: float, share: float = PACED_SHARE) -> int:
        """Records a consumer handling ``per_second`` of them can take per batch and still finish it in
        ``share`` of ``max_poll_interval_ms``: the margin left covers provider latency and retries."""
        return max(1, min(self.max_poll_records, int(per_second * self.max_poll_interval_ms / 1000 * share)))

    def partitions_for(self, topic: str) -> int:
        """Partitions for ``topic`` (with or without the prefix)."""
        return self.topic_partitions.get(topic.removeprefix(self.topic_prefix), self.partitions)


class RetentionSettings(BaseModel):
    """How long a service keeps the rows it needs only for a while, pruned by ``shared.db.retention``.

    The inbox (event ids a consumer applied) and the webhook receipts (callbacks applied) are what makes
    a redelivery or a provider retry change nothing: they are kept well beyond the broker's retention
    (and beyond SendGrid's 72 hours of retries), and a shorter setting is refused.
    """

    #: Inbox rows and consumer attempt rows.
    inbox_days: float = Field(default=30.0, gt=0)
    #: Provider webhook receipts (channel services).
    receipts_days: float = Field(default=30.0, gt=0)
    #: Contact status history (orchestrator). Collection records are kept for three years after the
    #: last activity in the US (12 CFR 1006.100), so the default is a little over that.
    status_history_days: float = Field(default=1_100.0, gt=0)
    #: Seconds between two pruning passes, and rows deleted per statement (one short transaction each).
    interval_s: float = Field(default=3_600.0, gt=0)
    chunk_rows: int = Field(default=5_000, ge=1, le=100_000)


class DatabaseSettings(BaseModel):
    url: str = ""
    echo: bool = False
    pool_size: int = 10
    #: SQLite: seconds between the WAL checkpoints run in the background after commits, instead of
    #: inside the commit that fills the WAL (``shared.db.database.WalCheckpoints``).
    wal_checkpoint_interval: float = Field(default=0.5, gt=0)
    #: SQLite: the WAL's bound in pages. Past it the background finishes its copy on the write
    #: connection, so that SQLite starts the WAL over while writers keep appending.
    wal_bound_pages: int = Field(default=8000, ge=100)


class TwilioSettings(BaseModel):
    account_sid: str = DEV_TWILIO_ACCOUNT_SID
    auth_token: SecretStr = SecretStr(DEV_TWILIO_AUTH_TOKEN)
    #: Where the REST API lives: the sandbox locally, ``https://api.twilio.com`` in production.
    base_url: str = SANDBOX_URL


class SendGridSettings(BaseModel):
    api_key: SecretStr = SecretStr(DEV_SENDGRID_API_KEY)
    #: The v3 API: the sandbox locally, ``https://api.sendgrid.com`` in production.
    base_url: str = SANDBOX_URL
    #: Base64 DER public key of the signed event webhook; empty means "fetch from the sandbox".
    webhook_public_key: str = ""


#: What deploy/secrets/cadencia-secrets.example.yaml fills every secret with.
PLACEHOLDER = "replace-me"


def _placeholders(model: BaseModel, path: str = "") -> list[str]:
    """Settings (``section.field``) whose value still contains :data:`PLACEHOLDER`."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, BaseModel):
            found.extend(_placeholders(value, f"{path}{name}."))
        elif isinstance(value, str) and PLACEHOLDER in value.lower():
            found.append(f"{path}{name}")
    return found


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
        put("kafka", "partitions", self._first("KAFKA_PARTITIONS"))
        put("kafka", "replication_factor", self._first("KAFKA_REPLICATION_FACTOR"))
        partitions = self._first("KAFKA_TOPIC_PARTITIONS")
        if partitions and "kafka" in fields:
            found.setdefault("kafka", {})["topic_partitions"] = json.loads(partitions)
        put("database", "url", self._first(f"{s}_DATABASE_URL", "DATABASE_URL"))
        redis_url = self._first(f"{s}_REDIS_URL", "REDIS_URL")
        if redis_url and "redis_url" in fields:
            found["redis_url"] = redis_url
        put("twilio", "account_sid", self._first("TWILIO_ACCOUNT_SID"))
        put("twilio", "auth_token", self._first("TWILIO_AUTH_TOKEN"))
        put("twilio", "base_url", self._first("TWILIO_API_BASE_URL"))
        put("sendgrid", "api_key", self._first("SENDGRID_API_KEY"))
        put("sendgrid", "base_url", self._first("SENDGRID_API_BASE_URL"))
        put("sendgrid", "webhook_public_key", self._first("SENDGRID_WEBHOOK_PUBLIC_KEY"))
        env = self._first("CADENCIA_ENV")
        if env:
            found["env"] = env
        for name in ("log_format", "log_level"):
            value = self._first(f"CADENCIA_{s}_{name.upper()}", f"CADENCIA_{name.upper()}")
            if value:
                found[name] = value
        keys = self._first("CADENCIA_API_KEYS")
        if keys and "api_keys" in fields:
            found["api_keys"] = keys
        return found


class ServiceSettings(BaseSettings):
    """Base for every service's settings. Subclasses set ``service_name`` and ``model_config``."""

    service_name: ClassVar[str] = "service"
    #: Providers call this service back (webhooks, TwiML, unsubscribe links): production needs a
    #: public ``https`` ``public_url``.
    receives_webhooks: ClassVar[bool] = False

    env: Environment = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    #: The URL providers reach this service at (webhook signatures are computed over it).
    public_url: str = ""
    log_level: str = "INFO"
    #: ``console`` (key=value) locally; production defaults to ``json`` (``CADENCIA_LOG_FORMAT``).
    log_format: Literal["console", "json"] = "console"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    #: ``role:key,role:key``; roles are viewer, editor, admin.
    api_keys: SecretStr = SecretStr(DEV_API_KEYS)
    max_body_bytes: int = 1_000_000
    #: Run the database migrations at start-up. Unset: yes in development, no in production, where
    #: ``cadencia migrate`` runs once (a Kubernetes Job, a compose one-shot) and services only
    #: refuse to start on a schema that is behind their code.
    migrate_on_start: bool | None = None
    #: ``redis://…`` (``REDIS_URL``): state every replica shares, today the per-sender rate limits.
    #: Unset, each process limits its senders on its own (right for one replica per channel).
    redis_url: str = ""

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
        if self.migrate_on_start is None:
            self.migrate_on_start = self.env != "production"
        if self.env == "production" and "log_format" not in self.model_fields_set:
            self.log_format = "json"
        if self.env == "production":
            bad = self.development_defaults_in_use()
            if bad:
                raise ValueError(
                    "refusing to start in production with development defaults for: " + ", ".join(bad)
                )
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        broker_days = self.kafka.broker_retention_ms / DAY_MS
        for name in ("inbox_days", "receipts_days"):
            days = getattr(self.retention, name)
            if days * DAY_MS <= self.kafka.broker_retention_ms:
                raise ValueError(
                    f"retention.{name} ({days:g} days) must be longer than the broker's retention "
                    f"(kafka.broker_retention_ms, {broker_days:g} days): a record the broker still holds can be "
                    "redelivered, and only the rows kept recognise it"
                )
        return self

    def development_defaults_in_use(self) -> list[str]:
        """Names of settings still at a development default (a secret, the sandbox, loopback);
        extended by services. Called before ``public_url`` gets its local default."""
        bad = []
        if "dev-admin-key" in self.api_keys.get_secret_value():
            bad.append("CADENCIA_API_KEYS")
        twilio = getattr(self, "twilio", None)
        if isinstance(twilio, TwilioSettings):
            if twilio.auth_token.get_secret_value() == DEV_TWILIO_AUTH_TOKEN:
                bad.append("TWILIO_AUTH_TOKEN")
            if twilio.account_sid == DEV_TWILIO_ACCOUNT_SID:
                bad.append("TWILIO_ACCOUNT_SID")
            if not is_public_https(twilio.base_url):
                bad.append("TWILIO_API_BASE_URL")
        sendgrid = getattr(self, "sendgrid", None)
        if isinstance(sendgrid, SendGridSettings):
            if sendgrid.api_key.get_secret_value() == DEV_SENDGRID_API_KEY:
                bad.append("SENDGRID_API_KEY")
            if not is_public_https(sendgrid.base_url):
                bad.append("SENDGRID_API_BASE_URL")
        orchestrator_key = getattr(self, "orchestrator_api_key", None)
        if isinstance(orchestrator_key, SecretStr) and orchestrator_key.get_secret_value() in (
            "", DEV_ORCHESTRATOR_API_KEY
        ):
            bad.append("CADENCIA_ORCHESTRATOR_API_KEY")
        if self.receives_webhooks and not is_public_https(self.public_url):
            bad.append(f"CADENCIA_{self.service_name.upper()}_PUBLIC_URL")
        bad.extend(f"{name} (still a template placeholder)" for name in _placeholders(self))
        return bad

    def role_by_key(self) -> dict[str, Role]:
        """Parse ``CADENCIA_API_KEYS`` into ``{key: role}``."""
        return {key: identity.role for key, identity in self.api_key_identities().items()}

    def api_key_identities(self) -> dict[str, ApiKeyIdentity]:
        """Parse ``CADENCIA_API_KEYS`` into ``{key: identity}``.

        Each entry is ``[name=]role[+four-eyes]:key``: ``ana=editor+four-eyes:k1`` is the key ``k1``
        of Ana, an editor whose publishes wait for a second editor's approval. Without a name the
        key is called after its role (``admin``), as it always was.
        """
        parsed: dict[str, ApiKeyIdentity] = {}
        for item in self.api_keys.get_secret_value().split(","):
            item = item.strip()
            if not item:
                continue
            head, sep, key = item.partition(":")
            name, has_name, role_part = head.partition("=")
            if not has_name:
                name, role_part = "", head
            role, _, flag = role_part.partition("+")
            if not sep or role not in ("viewer", "editor", "admin") or not key or flag not in ("", "four-eyes"):
                raise ValueError(
                    f"CADENCIA_API_KEYS entry must be [name=]role[+four-eyes]:key, got role {role_part!r}"
                )
            if has_name and not name.strip():
                raise ValueError("CADENCIA_API_KEYS: a key name must not be empty")
            parsed[key] = ApiKeyIdentity(name=name.strip() or role, role=role,
                                         four_eyes=flag == "four-eyes")
        return parsed


class ApiKeyIdentity(BaseModel):
    """Who a bearer key belongs to: recorded on every change it makes."""

    model_config = {"frozen": True}

    name: str
    role: Role
    #: Publishing with this key waits for a second editor's approval.
    four_eyes: bool = False
