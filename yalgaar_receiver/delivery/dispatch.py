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

The events one call runs in order on one thread (a request with the inline dispatcher, an
envelope on a Celery worker, one :meth:`~yalgaar_receiver.Receiver.emit`) are a :class:`Unit`
once something has called :meth:`~yalgaar_receiver.Receiver.enable_units`: a subscriber that
can do its work for many events at once (the presence tracker, one Redis script for a whole
envelope) hands each event's part to :func:`defer`, and the unit does it all once its events
have run and before their de-duplication claims are settled.

Imports: the core below the receiver (events, exceptions, routing).
"""

from __future__ import annotations

import threading
import typing as t

from ..events import Event, HandlerFailure
from ..exceptions import DispatchUnavailableError
from ..routing import ISOLATED, Observer, observed

__all__ = ["Dispatcher", "Emit", "Emitter", "Flush", "InlineDispatcher", "Unit", "defer"]

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


T = t.TypeVar("T")
R = t.TypeVar("R")
P = t.ParamSpec("P")

#: Does the deferred work of many events at once, in the order they ran; what it raises fails
#: every one of them.
Flush = t.Callable[[t.Sequence[tuple[Event, T]]], object]


class _Running(threading.local):
    """The unit this thread is running, if any. A thread-local, not a context variable: a
    thread pool copies the request's context onto its threads (for a trace), and an event run
    there, after the request's unit has ended, must do its work at once."""

    unit: Unit | None = None  # a class default: a new thread reads None without an exception


_running = _Running()


class Unit:
    """The events one call runs in order on one thread, and the work deferred to their end.

    :meth:`run` runs a call as this thread's unit; :meth:`close`, after it, does what
    was deferred, each :data:`Flush` once with its events in the order they ran, then tells the
    ``on_close`` callbacks which events failed there (the receiver settles their claims then, so
    that an event whose deferred work failed is run again on a resend). Its parts are made on
    first use: most units end with nothing deferred.
    """

    # Class-level defaults and no __init__: a unit that nobody defers to is cheap to make.
    _work: dict[Flush[t.Any], list[tuple[Event, t.Any]]] | None = None
    _callbacks: list[t.Callable[[t.AbstractSet[int]], object]] | None = None

    def run(self, call: t.Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``call(*args, **kwargs)`` with this unit as the thread's (a unit already running is
        the thread's again after it)."""
        outer = _running.unit
        _running.unit = self
        try:
            return call(*args, **kwargs)
        finally:
            _running.unit = outer

    def running(self) -> bool:
        """Whether this thread is running this unit now."""
        return _running.unit is self

    def on_close(self, callback: t.Callable[[t.AbstractSet[int]], object]) -> None:
        """Call ``callback`` with the ``id`` of each event whose deferred work failed, once
        :meth:`close` has done it all."""
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    def close(
        self, observe: t.Callable[[Event], Observer | None] | None = None
    ) -> list[HandlerFailure]:
        """Do the deferred work; return a failure for each event of a flush that raised (the
        flush is the failure's ``handler``).

        :param observe: gives the observer of each flush, told of it as of one handler call
            (timing, a span), from the first event the flush is given.
        """
        work, callbacks = self._work, self._callbacks
        failures: list[HandlerFailure] = []
        if work is None and callbacks is None:
            return failures
        self._work = self._callbacks = None
        raised: dict[t.Callable[..., t.Any], BaseException] = {}
        for flush, items in (work or {}).items():
            observer = None if observe is None else observe(items[0][0])
            if observer is None:
                try:
                    flush(items)
                except ISOLATED as error:
                    raised[flush] = error
            else:
                observed(flush, (items,), {}, raised.__setitem__, observer)
            if flush in raised:
                failures.extend(
                    HandlerFailure(event=event, handler=flush, error=raised[flush])
                    for event, _ in items
                )
        if callbacks:
            failed = {id(failure.event) for failure in failures}
            for callback in callbacks:
                callback(failed)
        return failures


def defer(flush: Flush[T], event: Event, item: T) -> bool:
    """Hand ``item``, the part of ``event``'s work that ``flush`` does, to the unit this thread
    is running; ``False`` when there is none, and the caller does the work now."""
    unit: Unit | None = _running.unit
    if unit is None:
        return False
    if unit._work is None:
        unit._work = {}
    unit._work.setdefault(flush, []).append((event, item))
    return True
