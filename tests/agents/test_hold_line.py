"""The hold line end to end: the voice service on the real broker and database, the sandbox placing the
calls and interpreting ``<Enqueue>``. A person the pacer over-dialled for waits on hold and is bridged when
the agent is free; a person who pressed 2 and whose hold runs out hears the callback offer; an agent busy
on one dial is tried again while hold time remains."""

from __future__ import annotations

import asyncio
import uuid

from services.sandbox.testing import SandboxHandle
from services.voice.agents import HOLD, OFFER
from shared.config import KafkaSettings
from shared.events.contracts import AgentQueue
from tests.agents.harness import (
    ended_call,
    fetched,
    outcome,
    queue_call,
    responses,
    settled,
    verbs,
    voice_settings,
)
from tests.channel_harness import Publisher, running_service, template_cached, unique_number
from tests.helpers import TopicReader, wait_for
from tests.voice.test_voice import Voice, voice_template

WHISPER = "Cliente en línea. Cuenta acc-1."


async def warmed_up(publisher: Publisher, outcomes: TopicReader, url: str, queue: AgentQueue) -> None:
    """Two calls of the queue answered by machines: no one answers in person, the ratio rises to max_ratio."""
    machines = [queue_call(unique_number("2000"), queue) for _ in range(2)]
    for event in machines:
        await publisher.dispatch(event)
    for event in machines:
        await wait_for(lambda e=event: outcome(outcomes, e.data.dispatch_id, "voicemail"), timeout=60,
                       what="a machine's voicemail")
    view = await settled(url, queue.name, 2)
    assert (view["ratio"], view["limit"]) == (2.0, 2)  # one agent, two calls in flight


async def test_a_person_over_dialled_for_waits_on_hold_and_one_whose_hold_runs_out_is_offered_a_callback(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = voice_settings(kafka_settings, database_url, sandbox, group, min_samples=2, hold_poll_s=2)
    await publisher.template(voice_template("reminder"))
    agent, busy_agent = unique_number("0001"), unique_number("0001")
    await sandbox.set_scenario(agent, answer="human", talk_s=60)
    await sandbox.set_scenario(busy_agent, answer="human", talk_s=60)
    patient = AgentQueue(name=f"hold-{uuid.uuid4().hex[:6]}", dial=agent, agents=1, wait_s=120, max_ratio=2)
    hurried = AgentQueue(name=f"hold-{uuid.uuid4().hex[:6]}", dial=busy_agent, agents=1, wait_s=6, max_ratio=2)
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        await asyncio.gather(warmed_up(publisher, outcomes, service.url, patient),
                             warmed_up(publisher, outcomes, service.url, hurried))
        # Two people answer at once for one agent, twice: after the script, or pressing 2 during it.
        people = [queue_call(unique_number("0001"), patient) for _ in range(2)]
        pressers = [queue_call(unique_number("2012"), hurried) for _ in range(2)]
        for event in people + pressers:
            await publisher.dispatch(event)

        # One talks to the agent at once; the other holds until that talk ends, then is bridged.
        connected = [await wait_for(lambda e=e: outcome(outcomes, e.data.dispatch_id, "agent_connected"),
                                    timeout=60, what="bridged") for e in people]
        assert [c[0].data.talk_time_s for c in connected] == [60, 60]
        calls = [await ended_call(sandbox, event) for event in people]
        [waiter] = [call for call in calls if "Enqueue" in verbs(call)]
        steps = verbs(waiter)
        assert steps.index("Redirect") < steps.index("Enqueue") < steps.index("Leave") < steps.index("Dial")
        enqueue = next(step for step in waiter["transcript"] if step["verb"] == "Enqueue")
        dial = next(step for step in waiter["transcript"] if step["verb"] == "Dial")
        assert enqueue["result"] == "leave" and (dial["status"], dial["whisper"]) == ("completed", WHISPER)
        [message] = [step for step in waiter["transcript"] if step.get("text") == HOLD["es"]]
        assert message["hold"] and waiter["spoken"].endswith("Gracias por su llamada.")
        [left] = await fetched(sandbox, waiter, "/voice/queued/")
        assert left["params"]["QueueResult"] == "leave" and left["status"] == 200
        view = await settled(service.url, patient.name, 4)
        assert view["counts"] == {"voicemail": 2, "agent_connected": 2}
        assert (view["peak_in_flight"], view["waiting"], view["connected"]) == (2, 0, 0)

        # Pressing 2 puts the person in line as well; 6 s on hold with the agent still busy: the offer.
        offered = await wait_for(lambda: [e for e in pressers if responses(outcomes, e.data.dispatch_id)],
                                 timeout=60, what="a callback request")
        [offer] = offered
        [callback] = responses(outcomes, offer.data.dispatch_id)
        assert (callback.data.kind, callback.data.digits) == ("callback_request", None)
        offer_call = await ended_call(sandbox, offer)
        assert "Enqueue" in verbs(offer_call) and "Dial" not in verbs(offer_call)
        enqueue = next(step for step in offer_call["transcript"] if step["verb"] == "Enqueue")
        assert enqueue["result"] == "leave" and enqueue["queue_time"] >= hurried.wait_s
        assert HOLD["es"] in offer_call["spoken"] and offer_call["spoken"].endswith(OFFER["es"])
        assert not outcome(outcomes, offer.data.dispatch_id, "abandoned")  # the script played
        [talker] = [e for e in pressers if e is not offer]
        [talked] = await wait_for(lambda: outcome(outcomes, talker.data.dispatch_id, "agent_connected"), timeout=60)
        assert talked.data.talk_time_s == 60
        view = await settled(service.url, hurried.name, 4)
        assert view["counts"] == {"voicemail": 2, "agent_connected": 1, "callback": 1}


async def test_an_agent_busy_on_the_first_dial_is_dialled_again_while_hold_time_remains(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = voice_settings(kafka_settings, database_url, sandbox, group, hold_poll_s=2)
    await publisher.template(voice_template("reminder"))
    agent = unique_number("0001")
    await sandbox.set_scenario(agent, answers=["busy"], answer="human", talk_s=15)
    queue = AgentQueue(name=f"busy-{uuid.uuid4().hex[:6]}", dial=agent, agents=1, wait_s=60)
    person = queue_call(unique_number("2012"), queue)
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(person)
        [connected] = await wait_for(lambda: outcome(outcomes, person.data.dispatch_id, "agent_connected"),
                                     timeout=60, what="bridged on the second dial")
        assert connected.data.talk_time_s == 15
        call = await ended_call(sandbox, person)
        dials = [step["status"] for step in call["transcript"] if step["verb"] == "Dial"]
        assert dials == ["busy", "completed"]
        steps = verbs(call)
        assert steps.index("Dial") < steps.index("Enqueue") < steps.index("Leave")  # back in line in between
        assert not responses(outcomes, person.data.dispatch_id)  # no callback request: an agent took it
        view = await settled(service.url, queue.name, 1)
        assert view["counts"] == {"agent_connected": 1}
