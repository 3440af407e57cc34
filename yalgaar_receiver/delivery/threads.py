"""``ThreadPoolDispatcher``: answer once the events are queued, run the handlers on threads.

Imports: the standard library, the core below the receiver, and the delivery room's dead letters
and serialization.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import logging
import threading
import time
import typing as t
import weakref

from .. import settings, signals
from .._fork import reset_after_fork
from ..events import Event, HandlerFailure
from ..exceptions import DispatchUnavailableError, PayloadTooLargeError
from ..routing import notify
from ..wire import preview
from .dead_letters import DeadLetter, DeadLetterSink, store
from .dispatch import Emit
from .serialization import dumps

__all__ = ["ThreadPoolDispatcher"]

logger = logging.getLogger("yalgaar_receiver.dispatch")

# How often a background thread runs an event whose emit answered "not now"
# (DispatchUnavailableError), and the longest it waits in between; then it is a dead letter.
_EMIT_ATTEMPTS: t.Final = 3
_EMIT_WAIT_MAX: t.Final = 5.0


class ThreadPoolDispatcher:
    """Answer as soon as the events are queued; run the handlers on a bounded pool of threads.

    A request's events are queued all or nothing: when they do not all fit, none is queued and
    :class:`~yalgaar_receiver.DispatchUnavailableError` asks the sender to send the whole body
    again later (HTTP 503 with ``Retry-After``). Queuing part of a body would make that resend
    run the queued part twice. A body with more events than the whole queue can ever hold is
    refused with :class:`~yalgaar_receiver.PayloadTooLargeError` (413), since resending it would
    never help; keep ``queue_size`` at or above Yalgaar's 200 events per request.

    The queue lives in this process's memory: it survives a handler that raises, not a process
    that dies. :meth:`close` (called at interpreter exit too) stops taking events and runs the
    ones already queued. A handler that raises is reported on ``handler_failed`` by
    :meth:`Receiver.emit <yalgaar_receiver.Receiver.emit>` and, when ``dead_letters`` is given,
    kept there for :func:`~yalgaar_receiver.dead_letters.replay`. When ``emit`` itself answers
    "not now" (:class:`~yalgaar_receiver.DispatchUnavailableError` from a de-duplication store),
    the thread waits as asked and tries twice more before the event becomes a dead letter. With
    more than one worker, events run in parallel and their order is not kept; ``max_workers=1``
    keeps it.

    Handlers run outside any Flask application or request context; push one in the handler
    (``with app.app_context():``) when it needs ``current_app``.

    :param max_workers: threads that run handlers; started on the first dispatch, so a
        dispatcher built before a server forks its workers starts its threads in each worker.
    :param queue_size: the most events waiting for a thread (events already running on a thread
        are not counted, so at most ``queue_size + max_workers`` are held at once).
    :param retry_after: seconds the sender is asked to wait when the queue is full.
    :param dead_letters: where failed handler calls are kept; ``None`` keeps them nowhere but the
        log and the ``handler_failed`` signal.
    :param shutdown_timeout: how long the exit hook waits for the queue to drain.
    """

    def __init__(
        self,
        max_workers: int = 4,
        queue_size: int = 1000,
        *,
        retry_after: float = 5.0,
        dead_letters: DeadLetterSink | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.max_workers = settings.positive_int(max_workers, "max_workers")
        self.queue_size = settings.positive_int(queue_size, "queue_size")
        self.retry_after = settings.positive_number(retry_after, "retry_after")
        self.dead_letters = dead_letters
        self.shutdown_timeout = settings.positive_number(shutdown_timeout, "shutdown_timeout")
        self._closed = False
        self._reset()
        self._atexit_hook: t.Callable[[], None] | None = None
        # A forked child inherits the queue and the lock but none of the threads; it starts
        # afresh (the parent still runs what it had queued).
        reset_after_fork(self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # an event was queued, or closing
        self._idle = threading.Condition(self._lock)  # an event finished
        self._queue: collections.deque[tuple[Event, Emit, contextvars.Context]] = (
            collections.deque()
        )
        self._running = 0
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)}/{self.queue_size} queued"
        return f"<ThreadPoolDispatcher workers={self.max_workers} {state}>"

    @property
    def queued(self) -> int:
        """Events waiting for a thread now."""
        return len(self._queue)

    def dispatch(self, events: t.Sequence[Event], emit: Emit) -> t.Sequence[HandlerFailure]:
        """Queue every event of one request, or none of them.

        :raises DispatchUnavailableError: the queue has no room for all of them, or the
            dispatcher is closed.
        :raises PayloadTooLargeError: there are more events than ``queue_size``.
        """
        count = len(events)
        if not count:
            return ()
        if count > self.queue_size:
            raise PayloadTooLargeError(
                f"The request has {count} events, more than the dispatch queue holds "
                f"(queue_size={self.queue_size}).",
                limit=self.queue_size,
                actual=count,
            )
        with self._lock:
            if self._closed:
                raise DispatchUnavailableError(
                    "The dispatcher is shutting down and takes no more events; send again.",
                    retry_after=self.retry_after,
                )
            waiting = len(self._queue)
            if waiting + count > self.queue_size:
                logger.warning(
                    "Dispatch queue full (%d of %d events waiting); refused %d event(s)",
                    waiting,
                    self.queue_size,
                    count,
                )
                raise DispatchUnavailableError(
                    f"The dispatch queue holds {waiting} of {self.queue_size} events and has no "
                    f"room for {count} more; send again in {self.retry_after:g} s.",
                    retry_after=self.retry_after,
                )
            if not self._threads:
                self._start()
            # The request's context variables go with its events (a trace's context, say), as
            # asyncio.to_thread does; each run gets its own copy.
            context = contextvars.copy_context()
            self._queue.extend((event, emit, context) for event in events)
            self._ready.notify(count)
        return ()

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking events and wait for the queued ones to run.

        Events still queued when ``timeout`` runs out are not run: they go to the dead-letter
        sink (with no sink, to the log at ERROR level with their serialized form), so they can
        be replayed. Calling this again does no harm.

        :param timeout: seconds to wait; ``None`` waits until the queue is empty.
        :return: whether every queued event ran to the end.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closed = True
            self._ready.notify_all()
            while self._queue or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._idle.wait(remaining)
            left = list(self._queue)
            self._queue.clear()
            running = self._running
            threads = self._threads
        if self._atexit_hook is not None:
            atexit.unregister(self._atexit_hook)
            self._atexit_hook = None
        for event, _, _ in left:
            self._give_up(event, "The dispatcher was closed before this event ran.")
        if left or running:
            logger.error(
                "Dispatcher closed with %d event(s) not run and %d still running",
                len(left),
                running,
            )
        for thread in threads:
            if thread is not threading.current_thread():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        return not left and not running

    def __enter__(self) -> ThreadPoolDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(self.shutdown_timeout)

    def _start(self) -> None:
        for number in range(self.max_workers):
            thread = threading.Thread(
                target=self._work, name=f"yalgaar-dispatch-{number}", daemon=True
            )
            # Daemon threads, drained by the exit hook: the interpreter joins non-daemon
            # threads before it runs exit hooks, so idle ones would block the exit forever.
            thread.start()
            self._threads.append(thread)
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            dispatcher = ref()
            if dispatcher is not None:
                dispatcher.close(dispatcher.shutdown_timeout)

        self._atexit_hook = close_at_exit
        atexit.register(close_at_exit)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                event, emit, context = self._queue.popleft()
                self._running += 1
            try:
                context.copy().run(self._run, event, emit)
            finally:
                with self._lock:
                    self._running -= 1
                    self._idle.notify_all()

    def _run(self, event: Event, emit: Emit) -> None:
        for attempt in range(1, _EMIT_ATTEMPTS + 1):
            try:
                failures = emit(event)
            except DispatchUnavailableError as error:
                # emit's own "not now" (with de-duplication: the store is down, or another
                # delivery of this event is running): wait as it asks, then try again.
                if attempt < _EMIT_ATTEMPTS:
                    logger.warning(
                        "Event %s not run yet (%s); trying again", preview(event, 500), error
                    )
                    time.sleep(min(error.retry_after, _EMIT_WAIT_MAX))
                    continue
                self._give_up(event, error)
                return
            except BaseException as error:
                # emit isolates every handler's errors; this catches what lies around them and
                # what a handler may raise that is not an error (SystemExit, KeyboardInterrupt,
                # GeneratorExit), so that the thread lives on and the event is not lost. A 2xx
                # answer promised the event would run or stay queued.
                logger.error(
                    "Dispatching %s failed with %s; kept as a dead letter, the worker goes on",
                    preview(event, 500),
                    type(error).__name__,
                    exc_info=error,
                )
                self._give_up(event, error)
                return
            for failure in failures:
                self._keep(DeadLetter.from_failure(failure))
            if failures:
                self._notify(event, tuple(failures))
            return

    def _give_up(self, event: Event, error: BaseException | str) -> None:
        letter = DeadLetter.from_error(event, error)
        if self.dead_letters is None:
            logger.error("Event not run: %s; event: %s", letter.error, dumps(event))
        else:
            self._keep(letter)
        self._notify(event, ())

    def _notify(self, event: Event, failures: tuple[HandlerFailure, ...]) -> None:
        """Send ``event_dead_lettered`` as this dispatcher: the event will not run again."""
        notify(self, signals.event_dead_lettered, event=event, failures=failures, attempts=1)

    def _keep(self, letter: DeadLetter) -> None:
        if self.dead_letters is not None:
            store(self.dead_letters, letter)
