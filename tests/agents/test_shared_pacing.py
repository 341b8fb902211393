"""Two voice instances on one Redis and one PostgreSQL database, as replicas run in production: each places
the calls of its own partitions, every webhook reaches the first one (a load balancer may send them
anywhere), and together they never put more calls of a queue in flight than its agents."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.sandbox.testing import SandboxHandle
from shared.config import KafkaSettings
from shared.events.contracts import AgentQueue, ContactDispatchedEvent
from tests.agents.harness import outcome, queue_call, queue_view, settled, voice_settings
from tests.channel_harness import Publisher, free_port, running_service, template_cached, unique_number
from tests.helpers import TopicReader, wait_for
from tests.voice.test_voice import Voice, voice_template

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def on_partition(event: ContactDispatchedEvent, partitions: set[int], count: int) -> ContactDispatchedEvent:
    """The same dispatch for a debtor whose key the producer sends to one of ``partitions``."""
    choose = DefaultPartitioner()
    everything = list(range(count))
    while True:
        debtor = f"debtor-{uuid.uuid4().hex[:8]}"
        if choose(debtor.encode(), everything, everything) in partitions:
            return event.model_copy(update={"subject": debtor,
                                            "data": event.data.model_copy(update={"debtor_id": debtor})})


async def test_two_instances_share_the_queues_calls_in_flight_and_free_each_others_slots(
    kafka_settings: KafkaSettings, pg_database_url: str, redis_url: str, sandbox: SandboxHandle,
    outcomes: TopicReader, publisher: Publisher, group: str,
) -> None:
    # A call waits for room up to 30 s (polling Redis): longer than a call, so never back to the retries.
    first = voice_settings(kafka_settings, pg_database_url, sandbox, group).model_copy(
        update={"redis_url": redis_url, "pacing_wait_s": 30.0})
    # The second places calls, but the provider's webhooks for them all go to the first.
    second = first.model_copy(update={"port": free_port(), "migrate_on_start": False})
    await publisher.template(voice_template("reminder"))
    agent = unique_number("0001")
    await sandbox.set_scenario(agent, answer="human", talk_s=6)
    queue = AgentQueue(name=f"shared-{uuid.uuid4().hex[:6]}", dial=agent, agents=1, wait_s=30)
    async with running_service(Voice, first) as one, running_service(Voice, second) as two:
        await template_cached(one, "reminder")
        await template_cached(two, "reminder")

        def held(service: Any) -> set[int]:
            return {tp.partition for tp in service.app.state.runner.assignment}

        await wait_for(lambda: held(one) and held(two) and len(held(one) | held(two)) == kafka_settings.partitions,
                       timeout=60, what="the partitions split between the instances")
        events = [on_partition(queue_call(unique_number("0001"), queue), held(service), kafka_settings.partitions)
                  for service in (one, two, one, two)]
        for event in events:
            await publisher.dispatch(event)
        for event in events:
            await wait_for(lambda e=event: outcome(outcomes, e.data.dispatch_id, "agent_connected"), timeout=120,
                           what="each call bridged in turn")
        view = await settled(one.url, queue.name, len(events))
        # one agent: never two calls in flight at once, across both instances
        assert (view["peak_in_flight"], view["counts"]) == (1, {"agent_connected": 4})
        assert await queue_view(second.public_url.replace(str(first.port), str(second.port)), queue.name) == view
        # each instance placed calls: the first freed the slots of the second's calls (their webhooks)
        assert one.app.state.dispatch.results == {"sent": 2} and two.app.state.dispatch.results == {"sent": 2}
