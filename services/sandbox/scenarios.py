"""Per-recipient outcomes: the documented default rules and the scripted overrides.

Default rules key on the last four digits of a number and the local part of an email (before any
``+tag``), so tests can use unique addresses (``+52155512341211``, ``bounce+t42@example.com``) and still
get a known outcome. ``docs/sandbox.md`` lists them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal[
    # messages (SMS/WhatsApp)
    "delivered",
    "read",
    "undelivered",
    "failed",
    "invalid",
    "opted_out",
    # email (delivered as above)
    "bounce",
    "blocked",
    "dropped",
    "deferred",
    "spamreport",
    "open",
    "click",
    "unsubscribe",
    "group_unsubscribe",
]
CallAnswer = Literal["human", "machine", "no-answer", "busy", "failed"]
AnsweredBy = Literal[
    "human", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax", "unknown"
]


class Scenario(BaseModel):
    """What happens to messages, calls and mail sent to one address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome | None = None
    #: Twilio error code for undelivered/failed (default 30003 / 30008).
    error_code: int | None = None
    #: The recipient answers this text (``STOP``, ``BAJA``, ``1``, free text) after ``reply_after`` provider
    #: seconds counted from delivery.
    reply: str | None = None
    reply_after: float | None = Field(default=None, ge=0)
    answer: CallAnswer | None = None
    #: Successive calls to this address answer in turn (an agent ``busy``, then free: ``human``); past the
    #: end, ``answer``.
    answers: list[CallAnswer] = Field(default_factory=list, max_length=100)
    #: Overrides the AMD result reported for an answered call.
    answered_by: AnsweredBy | None = None
    #: Keys pressed at successive ``<Gather>``s; a ``<Gather>`` past the end times out.
    digits: list[str] = Field(default_factory=list)
    #: An agent reached by ``<Dial>``: seconds of conversation once bridged (default 30).
    talk_s: float | None = Field(default=None, ge=0)
    #: The person who answered hangs up this many seconds into the call (mid-script: an abandoned call).
    hangup_after_s: float | None = Field(default=None, ge=0)
    #: Messages and mail to this address are refused with this status before anything is created (a
    #: provider outage for one recipient's route); a 429 carries ``Retry-After: retry_after_s``.
    error_status: int | None = Field(default=None, ge=429, le=599)
    retry_after_s: int = Field(default=1, ge=0)


DELIVERED = Scenario(outcome="delivered")
HUMAN = Scenario(answer="human")

_MESSAGE_RULES: dict[str, Scenario] = {
    "1211": Scenario(outcome="invalid", error_code=21211),
    "1610": Scenario(outcome="opted_out", error_code=21610),
    "3003": Scenario(outcome="undelivered", error_code=30003),
    "3005": Scenario(outcome="undelivered", error_code=30005),
    "3006": Scenario(outcome="undelivered", error_code=30006),
    "3007": Scenario(outcome="undelivered", error_code=30007),
    "3008": Scenario(outcome="failed", error_code=30008),
    "4000": Scenario(outcome="read"),
    "7001": Scenario(outcome="delivered", reply="STOP"),
    "7002": Scenario(outcome="delivered", reply="BAJA"),
    "7003": Scenario(outcome="delivered", reply="1"),
    "7004": Scenario(outcome="delivered", reply="Ya pagué, gracias"),
}
_CALL_RULES: dict[str, Scenario] = {
    "1211": Scenario(outcome="invalid", error_code=21211),
    "2000": Scenario(answer="machine"),
    "2001": Scenario(answer="no-answer"),
    "2002": Scenario(answer="busy"),
    "2003": Scenario(answer="failed"),
    "2011": Scenario(answer="human", digits=["1"]),
    "2012": Scenario(answer="human", digits=["2"]),
    "2019": Scenario(answer="human", digits=["9"]),
}
_EMAIL_RULES: dict[str, Scenario] = {
    name.replace("_", "-"): Scenario(outcome=name)
    for name in (
        "bounce",
        "blocked",
        "dropped",
        "deferred",
        "open",
        "click",
        "unsubscribe",
        "group_unsubscribe",
    )
}
_EMAIL_RULES["spam"] = Scenario(outcome="spamreport")
_EMAIL_RULES["spamreport"] = Scenario(outcome="spamreport")


def bare_number(address: str) -> str:
    return address[9:] if address.startswith("whatsapp:") else address


def normalize(address: str) -> str:
    address = address.strip()
    return address.lower() if "@" in address else address


class ScenarioBook:
    """Scripted scenarios (exact address, or the bare number for ``whatsapp:`` addresses) over defaults."""

    def __init__(self) -> None:
        self._scripted: dict[str, Scenario] = {}
        #: Calls placed (or dialled) to each scripted address with ``answers``: the next one's index.
        self._calls: dict[str, int] = {}

    def set(self, address: str, scenario: Scenario) -> None:
        self._scripted[normalize(address)] = scenario
        self._calls.pop(normalize(address), None)

    def remove(self, address: str) -> bool:
        self._calls.pop(normalize(address), None)
        return self._scripted.pop(normalize(address), None) is not None

    def clear(self) -> None:
        self._scripted.clear()
        self._calls.clear()

    def all(self) -> dict[str, Scenario]:
        return dict(self._scripted)

    def _scripted_for(self, address: str) -> Scenario | None:
        if not self._scripted:
            return None
        found = self._scripted.get(address)
        if found is None and address.startswith("whatsapp:"):
            found = self._scripted.get(address[9:])
        return found

    def for_message(self, to: str) -> Scenario:
        return self._scripted_for(to) or _MESSAGE_RULES.get(to[-4:], DELIVERED)

    def for_call(self, to: str) -> Scenario:
        return self._scripted_for(to) or _CALL_RULES.get(to[-4:], HUMAN)

    def next_call(self, to: str) -> Scenario:
        """The scenario of a new call to ``to``: its ``answer`` is the next of ``answers`` while any is left."""
        scenario = self.for_call(to)
        if not scenario.answers:
            return scenario
        index = self._calls.get(to, 0)
        self._calls[to] = index + 1
        if index >= len(scenario.answers):
            return scenario
        return scenario.model_copy(update={"answer": scenario.answers[index]})

    def for_email(self, email: str) -> Scenario:
        email = email.lower()
        found = self._scripted_for(email)
        if found is not None:
            return found
        local = email.partition("@")[0].partition("+")[0]
        return _EMAIL_RULES.get(local, DELIVERED)
