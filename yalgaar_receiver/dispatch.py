"""How accepted events reach the handlers: the replaceable dispatch strategy.

A :class:`Dispatcher` takes the events of one request and a function that runs one event through
every handler and subscriber (:meth:`Receiver.emit <yalgaar_receiver.Receiver.emit>`). The default,
:class:`InlineDispatcher`, runs them before the request is answered, so a failing handler can make
the answer a 500 and the sender try again. Other strategies (a thread pool, a task queue) answer
first and run later; they plug in through ``Receiver(dispatcher=...)`` without the receiver
knowing which one it has.
"""

from __future__ import annotations

import typing as t

from .events import Event, HandlerFailure

__all__ = ["Dispatcher", "Emit", "InlineDispatcher"]

#: Runs one event through every handler and subscriber and returns the calls that raised.
Emit = t.Callable[[Event], t.Sequence[HandlerFailure]]


@t.runtime_checkable
class Dispatcher(t.Protocol):
    """A dispatch strategy."""

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
