"""The runtime component: intake, account events and outcomes consumers, the deferral scheduler, routes."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI
from prometheus_client import Counter

from services.orchestrator.context import OrchestratorContext
from services.orchestrator.dlq.component import payload_keeper
from services.orchestrator.runtime import policy_port
from services.orchestrator.runtime.handlers import (
    ACCOUNT_TYPES,
    OUTCOME_TYPES,
    REQUEST_TYPES,
    BatchHandler,
    EventHandlers,
)
from services.orchestrator.runtime.scheduler import DeferralScheduler
from services.orchestrator.runtime.strategy import Strategy
from services.orchestrator.runtime.unit import Runtime
from shared.app import fatal_hook
from shared.bus import ConsumerRunner
from shared.db.attempts import ConsumerAttempts


class RuntimeComponent:
    def install(self, app: FastAPI) -> None:
        from services.orchestrator.runtime.views import router

        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        policy = getattr(app.state, "policy", None)
        if policy is None:
            policy = policy_port.load(ctx.settings.policy_dirs, ctx.settings.send_margin_s)
            app.state.policy = policy
        strategy = Strategy.load(ctx.settings.strategy_path or None)
        counter = Counter("orchestrator_contact_status", "Contact status changes by status", ["status"],
                          registry=app.state.metrics)
        rt = Runtime(ctx=ctx, strategy=strategy, policy=policy, jurisdictions=policy_port.jurisdictions(policy),
                     status_counter=counter)
        hooks = getattr(app.state, "runtime_hooks", None)  # the ops component's (counters, pauses)
        if hooks is not None:
            rt.hooks = hooks(rt)
        app.state.runtime = rt

        scheduler = DeferralScheduler(rt, ctx.settings.scheduler_interval)
        app.state.scheduler = scheduler
        await scheduler.start()
        stack.push_async_callback(scheduler.stop)

        # One group member per instance reads all three inputs: one rebalance per instance, and
        # records of one debtor (one key) are applied in order within each partition.
        runner = ConsumerRunner(
            name="orchestrator",
            service=ctx.settings.service_name,
            topics=[ctx.topics.contact_requests, ctx.topics.account_events, ctx.topics.contact_outcomes],
            group_id=ctx.settings.consumer_group,
            kafka=ctx.settings.kafka,
            handler=EventHandlers(rt),
            # a fetch is one transaction (docs/internals.md: batches); a failed batch is handled again record by record
            batch_handler=BatchHandler(rt),
            producer=ctx.producer,
            accept_types=REQUEST_TYPES | ACCOUNT_TYPES | OUTCOME_TYPES,
            crash_log=ConsumerAttempts(ctx.db),
            keep_payload=payload_keeper(ctx),
            on_fatal=fatal_hook(app),
        )
        app.state.metrics.register(runner.metrics)
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.runtime_consumer = runner
        app.state.ready_checks.extend([runner.ping, scheduler.ping])


component = RuntimeComponent()
