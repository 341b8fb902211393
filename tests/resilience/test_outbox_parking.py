"""Finding 2 of issue 11 at the relay: an outbox row the broker refuses no longer jams the outbox.

The 2.2 MB dispatch was retried every second forever and everything queued behind it waited,
across restarts. Now a row that fails ``max_publish_attempts`` times is parked (listed and
replayable over the ops API, counted in ``outbox_parked_total``); its debtor's later rows are
parked with it to keep their order, and every other debtor's rows keep flowing.
"""

from __future__ import annotations

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from sqlalchemy import select, update

from shared.db import OutboxRecord, add_to_outbox
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import FakeClock, make_settings, request_event, running

ADMIN = {"Authorization": "Bearer admin-key"}
DISPATCHED = "cadencia.contact.dispatched.v1"


def _event(debtor: str, note: str, pad: int = 0) -> PromiseBrokenEvent:
    # model_construct: the oversized one stands for the 2.2 MB dispatch the contracts let through.
    data = PromiseBroken.model_construct(debtor_id=debtor, account_id=note + "x" * pad)
    return PromiseBrokenEvent(subject=debtor, source="tests", data=data)


async def test_a_row_the_broker_refuses_is_parked_with_its_debtors_later_rows_and_the_rest_flows(
    kafka_settings, database_url: str
) -> None:
    jammed, other = "deb-jam-1", "deb-free-1"
    huge = _event(jammed, "huge", pad=2_300_000)
    async with running(make_settings(kafka_settings, database_url), FakeClock(), ("reminder",)) as orc:
        ctx = orc.app.state.ctx
        topic = orc.topics.account_events
        # The original failure: this row can never be produced.
        with pytest.raises(MessageSizeTooLargeError):
            await ctx.producer.send_raw(topic, b"x" * 2_300_000, jammed.encode())
        async with TopicReader(kafka_settings, topic, orc.topics.dispatch("sms")) as reader:
            async with ctx.db.transaction() as session:
                add_to_outbox(session, topic, huge)
                add_to_outbox(session, topic, _event(jammed, "after-huge"))
                add_to_outbox(session, topic, _event(other, "other-1"))
            # Another debtor's row behind the jam is published without waiting for it.
            await wait_for(lambda: [e for e in reader.events if e.data.account_id == "other-1"],
                           what="the other debtor's row published")

            async def parked() -> list[dict]:
                response = await orc.http.get("/v1/dlq/outbox", headers=ADMIN)
                assert response.status_code == 200
                return list(response.json()["items"])

            items = await wait_for(lambda: _two(parked), timeout=60, what="two rows parked")
            by_event = {i["event_id"]: i for i in items}
            assert by_event[huge.id]["attempts"] == ctx.relay.max_publish_attempts
            assert "MessageSizeTooLarge" in by_event[huge.id]["last_error"]
            assert by_event[huge.id]["size"] > 2_000_000
            follower = next(i for i in items if i["event_id"] != huge.id)
            assert "behind parked outbox row" in follower["last_error"]
            # The jammed debtor's row never overtook the parked one.
            assert not [e for e in reader.events if e.data.account_id == "after-huge"]
            metrics = (await orc.http.get("/metrics")).text
            assert "outbox_parked_total 2.0" in metrics

            # The relay moved on: a new request of another debtor is dispatched; the service is ready.
            good = request_event(other)
            await orc.publish(orc.topics.contact_requests, good)
            await wait_for(lambda: [e for e in reader.of_type(DISPATCHED) if e.data.request_id == good.id],
                           timeout=30, what="the good request dispatched")
            # A new row of the jammed debtor is parked too, behind the parked row: its order holds.
            async with ctx.db.transaction() as session:
                add_to_outbox(session, topic, _event(jammed, "later"))
            await wait_for(lambda: _count(parked, 3), what="the later row parked behind")
            assert (await orc.http.get("/ready")).status_code == 200

            # Replay: ops fixed the cause for the follower rows (here: the huge row is dropped by
            # parking only the small ones again), and replay publishes them in order.
            async with ctx.db.transaction() as session:
                await session.execute(update(OutboxRecord).where(OutboxRecord.event_id == huge.id)
                                      .values(value=b'{"dropped": true}'))
            response = await orc.http.post(f"/v1/dlq/outbox/{by_event[huge.id]['id']}/replay", headers=ADMIN)
            assert response.status_code == 202 and len(response.json()["replayed"]) == 3
            await wait_for(lambda: [e.data.account_id for e in reader.events
                                    if e.subject == jammed] == ["after-huge", "later"],
                           what="the jammed debtor's rows, in order")
            assert await parked() == []
            assert (await orc.http.post("/v1/dlq/outbox/999999/replay", headers=ADMIN)).status_code == 404
        async with ctx.db.sessions() as session:
            left = (await session.execute(select(OutboxRecord.id))).all()
        assert left == []


async def _two(parked) -> list[dict] | None:  # type: ignore[no-untyped-def]
    items = await parked()
    return items if len(items) == 2 else None


async def _count(parked, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await parked()) == n
