"""Channel-side cache of published template versions.

It reads the compacted templates topic from the beginning (a consumer group of its own per
process, offsets never committed, so every start replays the topic) and keeps every version it
sees by ``(key, version)`` — versions are immutable, so entries never go stale. A dispatch pins
``(key, version)``; on a miss (a version published before compaction dropped it, or not yet
consumed) :meth:`TemplateCache.get` asks the orchestrator's HTTP API and keeps the answer.

    cache = TemplateCache(settings.kafka, orchestrator_url, api_key)
    await cache.start()                       # in the lifespan; stack.push_async_callback(cache.stop)
    template = await cache.get(ref.key, ref.version)
    message = render_dispatch(template, dispatch.variables)
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
import structlog
from aiokafka import AIOKafkaConsumer

from shared.config import KafkaSettings
from shared.events import Topics, parse_event
from shared.events.contracts import TemplatePublished, TemplatePublishedEvent

# structlog directly (what shared.logging.get_logger returns): importing shared.logging trips mypy's
# unused-ignore check there under the current mypy; PII masking is a processor, so it applies here too.
log = structlog.get_logger(__name__)


class TemplateNotFound(LookupError):
    """The orchestrator has no such ``(key, version)``."""


class TemplateAccessRefused(PermissionError):
    """The orchestrator refused this service's API key (401/403): a configuration error that no retry
    fixes, unlike an unreachable orchestrator."""


class TemplateCache:
    def __init__(
        self,
        kafka_settings: KafkaSettings,
        orchestrator_url: str,
        api_key: str,
        *,
        http_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.kafka = kafka_settings
        self.topic = Topics(kafka_settings.topic_prefix).templates
        self.orchestrator_url = orchestrator_url.rstrip("/")
        self._api_key = api_key
        self._timeout = http_timeout
        self._transport = transport
        self.versions: dict[tuple[str, int], TemplatePublished] = {}
        #: Latest published version seen per ``(key, channel, locale, variant)``.
        self.published: dict[tuple[str, str, str, str], int] = {}
        self.http_fetches = 0
        #: Records of the templates topic that are not a published template, skipped. Not dead-lettered:
        #: every process replays the whole (compacted) topic at each start, so each would be dead-lettered
        #: again by every replica on every start; the orchestrator, which publishes the topic, is the
        #: source of truth and answers a miss over HTTP.
        self.skipped = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            base_url=self.orchestrator_url,
            headers={"Authorization": f"Bearer {self._api_key}"},
            timeout=self._timeout,
            transport=self._transport,
        )
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.kafka.bootstrap_servers,
            client_id=f"{self.kafka.client_id}-templates",
            # A group of its own: every process sees every template, and replays from the start.
            group_id=f"{self.kafka.client_id}-templates-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Templates change rarely, and a version not yet read is fetched over HTTP: no need to poll fast.
            fetch_max_wait_ms=max(self.kafka.fetch_max_wait_ms, self.kafka.idle_fetch_max_wait_ms),
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="template-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def put(self, template: TemplatePublished) -> None:
        """Record a version read from the topic; the last one per combination is the live one
        (a rollback republishes an older number, and one combination's events share a partition)."""
        self.versions[(template.key, template.version)] = template
        self.published[(template.key, template.channel, template.locale, template.variant)] = template.version

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker hiccup: the consumer reconnects by itself
                log.warning("template cache fetch failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        continue  # a tombstone: versions are immutable, keep what we have
                    try:
                        event = parse_event(record.value)
                    except Exception as exc:  # poison input: skip it, the orchestrator's API still answers
                        self.skipped += 1
                        log.warning("unreadable template record", offset=record.offset, error=str(exc)[:500])
                        continue
                    if isinstance(event, TemplatePublishedEvent):
                        self.put(event.data)
                    else:
                        self.skipped += 1
                        log.warning("not a template on the templates topic", offset=record.offset, type=event.type)

    def peek(self, key: str, version: int) -> TemplatePublished | None:
        """The cached version, without any I/O."""
        return self.versions.get((key, version))

    async def get(self, key: str, version: int) -> TemplatePublished:
        """The pinned version: from the topic, else from ``GET /v1/templates/{key}/versions/{version}``.

        Raises :class:`TemplateNotFound` if the orchestrator does not know it,
        :class:`TemplateAccessRefused` if it refuses our key, and ``httpx.HTTPError`` when it cannot be
        reached or fails (a transient failure for the caller).
        """
        cached = self.versions.get((key, version))
        if cached is not None:
            return cached
        if self._http is None:
            raise RuntimeError("TemplateCache.start() was not called")
        response = await self._http.get(f"/v1/templates/{key}/versions/{version}")
        self.http_fetches += 1
        if response.status_code == 404:
            raise TemplateNotFound(f"template {key} v{version} does not exist")
        if response.status_code in (401, 403):
            log.error("the orchestrator refused the template API key", status=response.status_code)
            raise TemplateAccessRefused(
                f"the orchestrator answered {response.status_code} to the template lookup: set "
                "CADENCIA_ORCHESTRATOR_API_KEY to one of its viewer keys, then replay the dead letters"
            )
        response.raise_for_status()
        template = template_from_api(response.json())
        self.versions[(key, version)] = template
        return template


def template_from_api(body: dict[str, Any]) -> TemplatePublished:
    """A ``TemplatePublished`` from the version endpoint's JSON (which carries a few more fields)."""
    data = {name: body[name] for name in TemplatePublished.model_fields if name in body}
    if data.get("published_at") is None:
        data["published_at"] = body.get("created_at")
    return TemplatePublished.model_validate(data)
