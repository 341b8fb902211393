"""A template-cache miss answered 401 by the orchestrator is a configuration error, not a transient one:
the dispatch is dead-lettered with what to fix, and the partition moves on instead of retrying forever."""

from __future__ import annotations

import base64
from typing import Any

import services.orchestrator.app as orchestrator_app
import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.orchestrator.settings import Settings as OrchestratorSettings
from services.sandbox.testing import SandboxHandle
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics
from tests.channel_harness import (
    Publisher,
    dispatch_event,
    free_port,
    free_socket,
    running_service,
    sandbox_messages,
    serve_app,
    service_settings,
    template_cached,
    template_event,
    unique_number,
)
from tests.helpers import TopicReader, wait_for


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


async def test_a_refused_orchestrator_key_dead_letters_the_dispatch_and_the_partition_moves_on(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    orchestrator = orchestrator_app.create_app(OrchestratorSettings(
        kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'orc.db'}"),
        api_keys="admin:the-real-admin-key,viewer:the-real-viewer-key",  # type: ignore[arg-type]
    ))
    sock = free_socket()
    orchestrator_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = service_settings(SMS, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}", sandbox,
                                free_port(), group=group)
    settings = settings.model_copy(update={"orchestrator_url": orchestrator_url})  # the development key: refused
    await publisher.template(template_event("reminder", "sms"))
    missing, cached = unique_number("0001"), unique_number("0001")
    miss = dispatch_event("sms", missing, "never_on_the_topic")
    same_debtor = dispatch_event("sms", cached, "reminder", debtor_id=miss.data.debtor_id)  # same partition, after
    async with (
        orchestrator.router.lifespan_context(orchestrator), serve_app(orchestrator, sock),
        TopicReader(kafka_settings, Topics(kafka_settings.topic_prefix).dlq) as dlq,
        running_service(SMS, settings) as service,
    ):
        await template_cached(service, "reminder")
        await publisher.dispatch(miss)
        await publisher.dispatch(same_debtor)
        letters = await dlq.wait_count("cadencia.dlq.dead_lettered.v1", 1, timeout=30)
        await wait_for(lambda: any(e.data.dispatch_id == same_debtor.data.dispatch_id
                                   for e in outcomes.of_type("cadencia.contact.delivery_updated.v1")),
                       timeout=30, what="the next dispatch of the partition is sent")
    letter = letters[0].data
    assert letter.service == "sms" and letter.key == miss.data.debtor_id
    assert "401" in letter.error and "CADENCIA_ORCHESTRATOR_API_KEY" in letter.error
    assert miss.data.dispatch_id.encode() in base64.b64decode(letter.value_b64)  # the original, for replay
    assert await sandbox_messages(sandbox, missing) == []  # never sent
    assert len(await sandbox_messages(sandbox, cached)) == 1
    # Asked once by the batch, once more by the record-by-record pass that isolates and dead-letters it:
    # not retried forever.
    assert service.app.state.templates.http_fetches == 2
    assert service.app.state.runner.batch_fallbacks >= 1
