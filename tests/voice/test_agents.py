"""Agents on calls end to end: a person bridged to an agent with a whisper, a busy agent's callback offer,
an abandoned call, and pacing that never puts more calls in flight than the queue's agents."""

from __future__ import annotations

import uuid

import httpx

from services.sandbox.testing import SandboxHandle
from shared.config import KafkaSettings
from shared.events.contracts import AgentQueue, ContactDispatchedEvent
from tests.channel_harness import Publisher, running_service, template_cached, unique_number
from tests.helpers import TopicReader, wait_for
from tests.voice.test_voice import Voice, placed_calls, settings_for, voice_dispatch, voice_template

DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"
ADMIN = {"Authorization": "Bearer dev-admin-key"}


def to_queue(event: ContactDispatchedEvent, queue: AgentQueue) -> ContactDispatchedEvent:
    return event.model_copy(update={"data": event.data.model_copy(update={"agent_queue": queue})})


def outcome(reader: TopicReader, dispatch_id: str, status: str) -> list:
    return [e for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id and e.data.status == status]


async def test_bridged_to_an_agent_a_busy_agent_offers_a_callback_and_a_hang_up_is_abandoned(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    await publisher.template(voice_template("reminder"))
    agent, busy_agent = unique_number("0001"), unique_number("0001")
    await sandbox.set_scenario(agent, answer="human", talk_s=12)
    await sandbox.set_scenario(busy_agent, answer="busy")
    queue = AgentQueue(name=f"q-{uuid.uuid4().hex[:6]}", dial=agent, agents=2, wait_s=10,
                       campaign_id=f"c-{uuid.uuid4().hex[:6]}")
    busy_queue = AgentQueue(name=f"q-{uuid.uuid4().hex[:6]}", dial=busy_agent, agents=1, wait_s=10,
                            campaign_id=f"c-{uuid.uuid4().hex[:6]}")
    pressed_2 = to_queue(voice_dispatch(unique_number("2012"), "reminder"), queue)  # key 2: an agent now
    waited = to_queue(voice_dispatch(unique_number("0001"), "reminder"), queue)  # no key: bridged after the menu
    no_agent = to_queue(voice_dispatch(unique_number("0001"), "reminder"), busy_queue)
    # Same queue, its own campaign: one abandoned call of one answered is past the 3% cap, and a campaign at
    # the cap places its next calls as plain IVR calls; the calls above may well be placed after it ends.
    hung_up = to_queue(voice_dispatch(unique_number("0001"), "reminder"),
                       queue.model_copy(update={"campaign_id": f"c-{uuid.uuid4().hex[:6]}"}))
    await sandbox.set_scenario(hung_up.data.to, answer="human", hangup_after_s=2)
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        for event in (pressed_2, waited, no_agent, hung_up):
            await publisher.dispatch(event)

        connected = [await wait_for(lambda e=e: outcome(outcomes, e.data.dispatch_id, "agent_connected"), timeout=60,
                                    what="agent connected") for e in (pressed_2, waited)]
        assert [c[0].data.talk_time_s for c in connected] == [12, 12]
        sid = (await placed_calls(sandbox, pressed_2.data.to))[0]["sid"]

        async def ended(sid: str) -> dict:
            call = await sandbox.call(sid)
            return call if call["status"] == "completed" else {}

        call = await wait_for(lambda: ended(sid), timeout=30, what="the bridged call ended")
        dial = next(step for step in call["transcript"] if step["verb"] == "Dial")
        assert (dial["to"], dial["status"]) == (agent, "completed")
        assert dial["whisper"] == "Cliente en línea. Cuenta acc-1."  # the agent hears the account
        assert "Cuenta acc-1" not in call["spoken"] and "Hola María, le llama Banco Ejemplo." in call["spoken"]
        assert call["spoken"].endswith("Gracias por su llamada.")
        # key 2 bridged instead of recording a callback request
        assert not [r for r in outcomes.of_type(RESPONSE) if r.data.dispatch_id == pressed_2.data.dispatch_id]

        [callback] = await wait_for(lambda: [r for r in outcomes.of_type(RESPONSE)
                                             if r.data.dispatch_id == no_agent.data.dispatch_id], timeout=60)
        assert callback.data.kind == "callback_request"
        offer_sid = (await placed_calls(sandbox, no_agent.data.to))[0]["sid"]
        offer = await wait_for(lambda: ended(offer_sid), timeout=30, what="the offered call ended")
        assert offer["spoken"].endswith("un asesor le devolverá la llamada.")
        assert not outcome(outcomes, no_agent.data.dispatch_id, "abandoned")

        [abandoned] = await wait_for(lambda: outcome(outcomes, hung_up.data.dispatch_id, "abandoned"), timeout=60)
        assert abandoned.data.channel == "voice"
        left_sid = (await placed_calls(sandbox, hung_up.data.to))[0]["sid"]
        left = await wait_for(lambda: ended(left_sid), timeout=30, what="the abandoned call ended")
        assert left["transcript"][-1]["verb"] == "CallerHangup"
        assert not [s for s in left["transcript"] if s["verb"] == "Dial"]

        async with httpx.AsyncClient(base_url=service.url, headers=ADMIN) as http:
            async def counts() -> dict:
                view = (await http.get(f"/v1/agents/{queue.name}")).json()
                return view if view["in_flight"] == 0 else {}

            view = await wait_for(counts, timeout=30, what="every call of the queue ended")
            assert view["counts"] == {"agent_connected": 2, "abandoned": 1}
            busy_view = (await http.get(f"/v1/agents/{busy_queue.name}")).json()
            assert busy_view["counts"] == {"callback": 1}
            assert (await http.get(f"/v1/agents/{queue.name}", headers={"Authorization": ""})).status_code == 401


async def test_progressive_pacing_keeps_calls_in_flight_within_the_available_agents(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    await publisher.template(voice_template("reminder"))
    agent = unique_number("0001")
    await sandbox.set_scenario(agent, answer="human", talk_s=8)
    queue = AgentQueue(name=f"q-{uuid.uuid4().hex[:6]}", dial=agent, agents=1, wait_s=10)
    events = [to_queue(voice_dispatch(unique_number("2012"), "reminder"), queue) for _ in range(3)]
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        async with httpx.AsyncClient(base_url=service.url, headers=ADMIN) as http:
            answer = await http.put(f"/v1/agents/{queue.name}/availability", json={"available": 1})
            assert answer.status_code == 200 and answer.json()["available"] == 1
            for event in events:
                await publisher.dispatch(event)
            for event in events:
                await wait_for(lambda e=event: outcome(outcomes, e.data.dispatch_id, "agent_connected"), timeout=120,
                               what="each call bridged in turn")
            async def ended() -> dict:
                view = (await http.get(f"/v1/agents/{queue.name}")).json()
                return view if view["in_flight"] == 0 else {}

            view = await wait_for(ended, timeout=30, what="every call of the queue ended")
        # one agent: never two calls at once (the learned ratio stays 1 until enough calls have ended)
        assert view["peak_in_flight"] == 1 and view["counts"] == {"agent_connected": 3}
