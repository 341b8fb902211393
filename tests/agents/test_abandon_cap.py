"""The abandoned-call cap per campaign over 30 days, end to end through the voice service and the sandbox:
an abandoned call puts its campaign over 3%, so the campaign's next call is a plain IVR call (no bridge,
key 2 records a callback request) while another campaign's calls are still bridged; keys 1 and 9 during
the script are never abandoned; only the last 30 days count, and from 2% the campaign is not over-dialled."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx

from services.sandbox.testing import SandboxHandle
from services.voice.agents import AgentCall
from shared.config import KafkaSettings
from shared.events import utcnow
from shared.events.contracts import AgentQueue
from tests.agents.harness import (
    ADMIN,
    ended_call,
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


async def campaign(url: str, campaign_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as http:
        answer = await http.get(f"/v1/agents/campaigns/{campaign_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


async def test_a_campaign_over_the_cap_gets_plain_ivr_calls_and_another_campaign_is_still_bridged(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = voice_settings(kafka_settings, database_url, sandbox, group)
    await publisher.template(voice_template("reminder"))
    agent = unique_number("0001")
    await sandbox.set_scenario(agent, answer="human", talk_s=8)
    capped = AgentQueue(name=f"cap-{uuid.uuid4().hex[:6]}", dial=agent, agents=2, wait_s=30,
                        campaign_id=f"camp-{uuid.uuid4().hex[:6]}")
    calm = capped.model_copy(update={"campaign_id": f"camp-{uuid.uuid4().hex[:6]}"})
    hung_up = queue_call(unique_number("0001"), capped)
    await sandbox.set_scenario(hung_up.data.to, answer="human", hangup_after_s=2)
    async with running_service(Voice, settings) as service:
        await template_cached(service, "reminder")
        assert (await campaign(service.url, capped.campaign_id or ""))["bridging"]
        await publisher.dispatch(hung_up)
        await wait_for(lambda: outcome(outcomes, hung_up.data.dispatch_id, "abandoned"), timeout=60,
                       what="the abandoned call")
        figure = await campaign(service.url, capped.campaign_id or "")
        assert (figure["answered"], figure["abandoned"], figure["abandoned_rate"]) == (1, 1, 1.0)
        assert not figure["bridging"] and figure["throttled"]

        # Over the cap: the campaign's next call is the plain IVR; the other campaign's, bridged.
        presses_2 = queue_call(unique_number("2012"), capped)
        promises = queue_call(unique_number("2011"), calm)  # key 1 during the script
        stops = queue_call(unique_number("2019"), calm)  # key 9
        waits = queue_call(unique_number("0001"), calm)
        for event in (presses_2, promises, stops, waits):
            await publisher.dispatch(event)
        [request] = await wait_for(lambda: responses(outcomes, presses_2.data.dispatch_id), timeout=60,
                                   what="the IVR's callback request")
        assert (request.data.kind, request.data.digits) == ("callback_request", "2")
        ivr = await ended_call(sandbox, presses_2)
        assert not {"Redirect", "Enqueue", "Dial"} & set(verbs(ivr))
        assert ivr["spoken"].endswith("Gracias. Un asesor se comunicará con usted pronto.")
        await wait_for(lambda: outcome(outcomes, waits.data.dispatch_id, "agent_connected"), timeout=60,
                       what="the other campaign's call bridged")
        for event, kind in ((promises, "promise_to_pay"), (stops, "opt_out")):
            [answer] = await wait_for(lambda e=event: responses(outcomes, e.data.dispatch_id), timeout=60)
            assert answer.data.kind == kind
            await ended_call(sandbox, event)
            assert not outcome(outcomes, event.data.dispatch_id, "abandoned")  # the person heard the script

        view = await settled(service.url, capped.name, 4)  # the IVR call was never paced
        assert view["counts"] == {"abandoned": 1, "agent_connected": 1, "conversation": 2}
        # the IVR call's answer counts in its campaign's figure; keys 1 and 9 in the other's, not abandoned
        figure = await campaign(service.url, capped.campaign_id or "")
        assert (figure["answered"], figure["abandoned"]) == (2, 1)
        assert (await campaign(service.url, calm.campaign_id or ""))["abandoned"] == 0
        async with service.app.state.db.sessions() as session:
            row = await session.get(AgentCall, presses_2.data.dispatch_id)
            assert row is not None and (row.mode, row.answered, row.outcome) == ("ivr", True, "conversation")

        # Only the last 30 days count: an old abandoned call is forgotten; 1 in 40 (2.5%) is throttled.
        now = utcnow()

        def ended(campaign_id: str, outcome_: str, days_ago: float) -> AgentCall:
            return AgentCall(dispatch_id=str(uuid.uuid4()), queue=capped.name, dial=agent, wait_s=30,
                             account_id="acc-1", campaign_id=campaign_id, mode="bridge", outcome=outcome_,
                             answered=True, ended_at=now - timedelta(days=days_ago), created_at=now)

        async with service.app.state.db.transaction() as session:
            session.add_all([ended("camp-old", "abandoned", 31), ended("camp-old", "agent_connected", 29)])
            session.add_all([ended("camp-close", "abandoned", 1)]
                            + [ended("camp-close", "agent_connected", 2) for _ in range(39)])
        old, close = await campaign(service.url, "camp-old"), await campaign(service.url, "camp-close")
        assert (old["answered"], old["abandoned"], old["bridging"], old["throttled"]) == (1, 0, True, False)
        assert (close["answered"], close["abandoned"], close["bridging"], close["throttled"]) == (40, 1, True, True)
