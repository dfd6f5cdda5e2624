"""A credential's state, named, with every allowed transition written here and nowhere else.

    empty           no token yet, nothing has failed (startup, before the first token)
    valid           a usable token; its renewal is scheduled
    renewing        a token request is in flight (callers share it)
    backing_off     the last request failed transiently; the next waits (a still-valid token is used)
    login_required  parked: no refresh token, or it was rejected; a human logs in again
    failed          parked: the endpoint refused the client itself; one lazy retry after a cool-down
    not_configured  the route's credential settings are empty; it never requests anything

`/-/status` reports the state, `/-/metrics` has one series per state, and the README lists these.
Whether the credential holds a usable token is reported next to it (`valid`): a token stays usable
while a renewal is in flight or backing off.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from authproxy.clock import Clock


class State(StrEnum):
    EMPTY = "empty"
    VALID = "valid"
    RENEWING = "renewing"
    BACKING_OFF = "backing_off"
    LOGIN_REQUIRED = "login_required"
    FAILED = "failed"
    NOT_CONFIGURED = "not_configured"


PARKED = frozenset((State.LOGIN_REQUIRED, State.FAILED, State.NOT_CONFIGURED))

TRANSITIONS: dict[State, frozenset[State]] = {
    # a stored token adopted (startup, another process, a login), or a token request started
    State.EMPTY: frozenset((State.VALID, State.RENEWING)),
    # due for renewal (or refused upstream): a request
    State.VALID: frozenset((State.RENEWING,)),
    # the request's outcome
    State.RENEWING: frozenset((State.VALID, State.BACKING_OFF, State.LOGIN_REQUIRED, State.FAILED)),
    # the backoff is over (a request), or a reset by a new login
    State.BACKING_OFF: frozenset((State.RENEWING, State.VALID, State.EMPTY)),
    # a login seen in the store, or a reset by a new login
    State.LOGIN_REQUIRED: frozenset((State.VALID, State.EMPTY)),
    # a token seen in the store, the cool-down's one lazy retry, or a reset
    State.FAILED: frozenset((State.VALID, State.EMPTY, State.RENEWING)),
    State.NOT_CONFIGURED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: the credential tried a move the table does not allow."""


class StateMachine:
    """The current state, when it was entered, and the only way to change it (staying put is always allowed)."""

    __slots__ = ("_clock", "on_move", "since", "state")

    def __init__(self, clock: Clock, state: State = State.EMPTY) -> None:
        self._clock = clock
        self.state = state
        self.since = clock.now()
        self.on_move: Callable[[State, State], None] | None = None  # told of every change (tests, metrics)

    def move(self, to: State) -> None:
        if to is self.state:
            return
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state} -> {to} is not an allowed transition")
        before, self.state, self.since = self.state, to, self._clock.now()
        if self.on_move is not None:
            self.on_move(before, to)

    @property
    def parked(self) -> bool:
        """A human (or the cool-down) must act before another token request."""
        return self.state in PARKED
