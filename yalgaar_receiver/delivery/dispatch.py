"""How accepted events reach the handlers: the replaceable dispatch strategy.

A :class:`Dispatcher` takes the events of one request and a function that runs one event through
every handler and subscriber (:meth:`Receiver.emit <yalgaar_receiver.Receiver.emit>`). The default,
:class:`InlineDispatcher`, runs them before the request is answered, so a failing handler can make
the answer a 500 and the sender try again.
:class:`~yalgaar_receiver.delivery.ThreadPoolDispatcher` answers as soon as the events are queued
in memory and runs them on a bounded pool of threads;
:class:`~yalgaar_receiver.celery.CeleryDispatcher` sends them to a Celery broker. Each plugs in
through ``Receiver(dispatcher=...)`` without the receiver knowing which one it has;
``docs/delivery.md`` says what each one promises.

A strategy that cannot take a request's events raises
:class:`~yalgaar_receiver.DispatchUnavailableError` (HTTP 503 with ``Retry-After``).

Imports: the core below the receiver (events, exceptions).
"""

from __future__ import annotations

import typing as t

from ..events import Event, HandlerFailure
from ..exceptions import DispatchUnavailableError

__all__ = ["Dispatcher", "Emit", "Emitter", "InlineDispatcher"]

#: Runs one event through every handler and subscriber and returns the calls that raised.
Emit = t.Callable[[Event], t.Sequence[HandlerFailure]]


class Emitter(t.Protocol):
    """What the delivery room needs of a :class:`~yalgaar_receiver.Receiver`: its ``emit``
    and ``emit_batch``.

    Dispatchers that run events in another process, replays and the presence of a worker take
    a receiver through this, so that nothing here imports the receiver.
    """

    def emit(self, event: Event) -> tuple[HandlerFailure, ...]: ...

    def emit_batch(
        self, events: t.Sequence[Event]
    ) -> list[tuple[HandlerFailure, ...] | DispatchUnavailableError]: ...


@t.runtime_checkable
class Dispatcher(t.Protocol):
    """A dispatch strategy.

    A strategy that runs events in another process, where no request brings it an ``emit``,
    may also have an ``attach(receiver)`` method: ``Receiver(dispatcher=...)`` calls it with
    the receiver whose :meth:`~yalgaar_receiver.Receiver.emit` the other process should call.
    """

    def dispatch(self, events: t.Sequence[Event], emit: Emit) -> t.Sequence[HandlerFailure]:
        """Hand ``events`` to ``emit``, now or later, in order.

        Return the failures that are known before the request is answered (none for a strategy
        that runs the handlers later). Raise a :class:`~yalgaar_receiver.YalgaarError` when the
        events cannot be taken at all, so that the sender is told to try again.
        """
        ...


class InlineDispatcher:
    """Run every handler in the request, one event after another (the default)."""

    def dispatch(self, events: t.Sequence[Event], emit: Emit) -> t.Sequence[HandlerFailure]:
        failures: list[HandlerFailure] = []
        for event in events:
            failures.extend(emit(event))
        return failures
