"""The agent queue a voice dispatch carries: the segment's queue, when it is open (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.orchestrator.runtime.strategy import AgentQueueConfig, Strategy
from shared.events.contracts import AgentQueue, ContactRequested

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _days(key: str) -> set[int]:
    key = key.strip().lower()
    if key in ("daily", "all"):
        return set(range(7))
    if "-" in key:
        first, last = key.split("-", 1)
        return set(range(WEEKDAYS.index(first), WEEKDAYS.index(last) + 1))
    return {WEEKDAYS.index(key)}


def is_open(queue: AgentQueueConfig, now: datetime) -> bool:
    if not queue.hours:
        return True
    local = now.astimezone(ZoneInfo(queue.time_zone))
    minute = local.hour * 60 + local.minute
    for key, spans in queue.hours.items():
        if local.weekday() not in _days(key):
            continue
        for span in spans:
            start, end = (int(p[:2]) * 60 + int(p[3:5]) for p in span.split("-"))
            if start <= minute < end:
                return True
    return False


def dispatch_fields(strategy: Strategy, request: ContactRequested, channel: str, now: datetime) -> dict[str, Any]:
    """``agent_queue`` of a voice dispatch whose segment names an open queue."""
    if channel != "voice":
        return {}
    name = strategy.plan(request.account).agent_queue
    queue = strategy.config.agent_queues.get(name) if name else None
    if queue is None or not is_open(queue, now):
        return {}
    return {"agent_queue": AgentQueue(name=name or "", dial=queue.dial, agents=queue.agents, wait_s=queue.wait_s,
                                      max_ratio=queue.max_ratio, campaign_id=request.campaign_id)}
