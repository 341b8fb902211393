"""Settings of the voice service (``CADENCIA_VOICE_*``, nested with ``__``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.channels.settings import ChannelServiceSettings
from shared.config import TwilioSettings
from shared.events.contracts import ResponseKind


class CallerSettings(BaseModel):
    """Who calls: the caller id number and how many calls it may place per second (Twilio's account CPS,
    1 by default), ``burst`` back to back after a pause."""

    caller_id: str = "+15005550006"
    cps: float = Field(default=1.0, gt=0)
    burst: int = Field(default=1, ge=1)
    #: Seconds a call rings before Twilio gives up (the Calls API ``Timeout``). A call is not placed
    #: with less than this left before its ``send_before``, so it never rings past it.
    ring_timeout_s: int = Field(default=30, ge=5, le=600)


DEFAULT_DIGITS: dict[str, ResponseKind] = {"1": "promise_to_pay", "2": "callback_request", "9": "opt_out"}


class IvrSettings(BaseModel):
    """The keypad menu played to a person after the live script.

    ``digits`` maps a key to the response it reports on ``contact.outcomes``; any other key is reported as
    ``keypress`` with its digits.
    """

    digits: dict[str, ResponseKind] = Field(default_factory=lambda: dict(DEFAULT_DIGITS))
    #: Seconds Twilio waits for a key before the fallback message.
    timeout_s: int = Field(default=5, ge=1, le=60)


class PacingSettings(BaseModel):
    """Progressive dialling of agent queues (``services.voice.pacing``) and the hold line."""

    #: Ended calls of a queue before its human-answer rate sets the ratio (1 until then).
    min_samples: int = Field(default=5, ge=1, le=50)
    #: Abandoned calls per campaign over ``window_days`` (the US pack: 3% per 30 days): at the cap a
    #: campaign's calls are placed as automated IVR calls, never bridged, until its rate is back under it.
    abandon_cap: float = Field(default=0.03, gt=0, le=1)
    #: From this share of the cap on, no over-dialling (ratio 1).
    throttle_share: float = Field(default=2 / 3, gt=0, le=1)
    window_days: int = Field(default=30, ge=1, le=366)
    #: Seconds a campaign's figure is reused before the database is read again.
    figure_ttl_s: float = Field(default=5.0, ge=0)
    #: Seconds of hold (one wait document) between two looks for a free agent.
    hold_poll_s: int = Field(default=3, ge=1, le=60)
    #: With Redis: the longest an admitted call or a connected agent counts (its final status was lost).
    flight_ttl_s: float = Field(default=4 * 3600, gt=0)


class Settings(ChannelServiceSettings):
    service_name: ClassVar[str] = "voice"
    model_config = SettingsConfigDict(env_prefix="CADENCIA_VOICE_", env_nested_delimiter="__", extra="ignore")

    port: int = 8003
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    caller: CallerSettings = Field(default_factory=CallerSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    #: Answering-machine detection (``MachineDetection=DetectMessageEnd``): a machine hears only the
    #: limited-content voicemail. Off, every answer is treated as a person.
    amd: bool = True
    #: Progressive dialing: how long a call of a full agent queue waits for room before the dispatch
    #: pipeline retries it (until its deadline).
    pacing_wait_s: float = Field(default=2.0, gt=0)
    pacing: PacingSettings = Field(default_factory=PacingSettings)

    @model_validator(mode="after")
    def _paced_batches(self) -> Settings:
        """Calls leave at ``caller.cps`` (1 a second by default): a batch of 500 would take 8 minutes, past
        Kafka's poll interval, and the group would rebalance and redeliver it. The dispatch consumer's
        batch is sized to take a quarter of the interval; a configured size that needs more than half
        of it is refused."""
        if "max_claimed" not in self.sending.model_fields_set:
            # Paced calls gain nothing from claiming ahead of the requests in flight: keep a kill's
            # ``unknown`` window to the calls that may have been placed.
            self.sending = self.sending.model_copy(update={"max_claimed": self.sending.max_in_flight})
        consumer = f"{self.service_name}-dispatch"
        interval_s = self.kafka.max_poll_interval_ms / 1000
        configured = self.kafka.batch_sizes.get(consumer)
        if configured is None:
            sizes = {**self.kafka.batch_sizes, consumer: self.kafka.paced_batch_size(self.caller.cps)}
            self.kafka = self.kafka.model_copy(update={"batch_sizes": sizes})
        elif configured / self.caller.cps > interval_s / 2:
            raise ValueError(
                f"kafka.batch_sizes[{consumer!r}] = {configured} calls take {configured / self.caller.cps:.0f} s at "
                f"{self.caller.cps} calls/s, more than half of kafka.max_poll_interval_ms ({interval_s:.0f} s): "
                "the group would rebalance under normal pacing"
            )
        return self
