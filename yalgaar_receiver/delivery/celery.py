"""``CeleryDispatcher``: each accepted event becomes a Celery task; handlers run on the workers.

Install with ``pip install 'yalgaar-receiver[celery]'``. This is the only module that imports
Celery, and nothing imports it unless the application does::

    celery_app = Celery("hooks", broker="redis://127.0.0.1:6379/0")
    receiver = Receiver(dispatcher=CeleryDispatcher(celery_app))

    @receiver.on_bind
    def joined(event): ...

The web process and the worker import the same module, so both build the same receiver with the
same handlers. The web process validates each request and publishes one task per event (the
event in its versioned JSON form, :mod:`~yalgaar_receiver.serialization`); the worker rebuilds
the typed event and runs it through :meth:`Receiver.emit <yalgaar_receiver.Receiver.emit>`, so
decorated handlers and signal subscribers run there unchanged.

Two modes. ``mode="event"`` (the default) publishes one task per event: the events of one request
spread over every worker, and a retry is that event's own task. ``mode="envelope"`` publishes one
task per request (Yalgaar sends one envelope per request) that runs its events in order on one
worker, through :meth:`Receiver.emit_batch <yalgaar_receiver.Receiver.emit_batch>`: one broker
message instead of up to 200, and its de-duplication keys claimed together. Each event keeps its
own outcome there too: only the events that failed are published again (one task for all of
them, after the backoff), and only those are dead-lettered after the last try. The default stays
per event because it spreads a batch over the workers and keeps a slow handler from holding up
the 199 events after it; choose per envelope when broker messages are the cost that matters
(``docs/scaling.md``).

Delivery guarantees (``docs/delivery.md`` has the whole table):

* the request is answered 2xx only once every event of it was handed to the broker; when the
  broker cannot be reached it is answered 503 with ``Retry-After``;
* tasks are acknowledged late (after the handlers ran) and rejected back to the queue when the
  worker process dies, so an event survives a worker killed mid-handler;
* a handler that raises makes the task retry with exponential backoff, up to ``max_retries``;
  after the last try the failures go to the dead-letter sink.

So delivery is at least once: handlers must be idempotent, or the receiver must de-duplicate.
"""

from __future__ import annotations

import logging
import random
import typing as t

try:
    from celery import Celery, Task
    from celery.exceptions import Reject
    from kombu.exceptions import OperationalError
except ModuleNotFoundError as error:  # pragma: no cover - the test runs in a subprocess
    from .._extras import missing

    raise missing(error, "yalgaar_receiver.celery", "celery") from error

from .. import settings, signals
from ..events import Event, HandlerFailure
from ..exceptions import ConfigurationError, DispatchUnavailableError
from ..routing import listened, notify
from ..wire import preview
from .dead_letters import DeadLetter, DeadLetterSink, JsonLinesDeadLetterSink, store
from .dispatch import Emit, Emitter
from .serialization import event_from_dict, event_to_dict

__all__ = ["CeleryDispatcher"]

logger = logging.getLogger("yalgaar_receiver.celery")

#: The Celery task's default name; give each receiver that shares a Celery app its own.
TASK_NAME: t.Final = "yalgaar_receiver.emit"
#: How one event's run on the worker ended: the handler calls that raised (none: it
#: succeeded), or what raised around its handlers.
RunResult = tuple[HandlerFailure, ...] | Exception
#: What ``mode`` may be: one task per event, or one per envelope.
MODES: t.Final = ("event", "envelope")


class CeleryDispatcher:
    """Send each accepted event to a Celery queue; run its handlers on a worker.

    :param celery_app: the application's Celery app; its broker settings decide where tasks go.
        Set ``broker_transport_options`` ``socket_connect_timeout`` and ``socket_timeout`` (a
        few seconds) so that a broker that vanishes answers a request with 503 instead of
        holding it; with none set, this dispatcher sets both to ``publish_timeout``.
    :param queue: the queue the tasks are sent to; start workers with ``-Q`` naming it.
    :param task_name: the registered task's name; unique per receiver in one Celery app.
    :param max_retries: how many times a failed event is tried again after its first run.
    :param retry_backoff: seconds before the first retry; each later one waits twice as long.
    :param retry_backoff_max: the longest wait between two tries. Keep it below the broker's
        ``visibility_timeout`` (Redis: one hour by default), or a waiting retry is delivered twice.
    :param retry_jitter: wait a random time between zero and the backoff (spreads the retries of
        a batch that failed together).
    :param retry_after: seconds the sender is asked to wait when the broker cannot be reached.
    :param publish_timeout: socket timeouts filled in when the Celery app sets none.
    :param publish_retries: how many times one publish is tried again before giving up with 503.
    :param dead_letters: where events go after their last try; a
        :class:`~yalgaar_receiver.dead_letters.JsonLinesDeadLetterSink` in the worker's working
        directory by default.
    :param mode: ``"event"`` (one task per event, the default) or ``"envelope"`` (one task per
        request, its events run in order on one worker; see above).
    """

    def __init__(
        self,
        celery_app: Celery,
        queue: str = "yalgaar",
        *,
        task_name: str = TASK_NAME,
        max_retries: int = 5,
        retry_backoff: float = 2.0,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        retry_after: float = 5.0,
        publish_timeout: float = 2.0,
        publish_retries: int = 1,
        dead_letters: DeadLetterSink | None = None,
        mode: str = "event",
    ) -> None:
        self.app = celery_app
        self.mode = settings.choice(mode, "mode", MODES)
        self.queue = queue
        self.max_retries = settings.count(max_retries, "max_retries")
        self.retry_backoff = settings.positive_number(retry_backoff, "retry_backoff")
        self.retry_backoff_max = settings.positive_number(retry_backoff_max, "retry_backoff_max")
        self.retry_jitter = retry_jitter
        self.retry_after = settings.positive_number(retry_after, "retry_after")
        publish_timeout = settings.positive_number(publish_timeout, "publish_timeout")
        self.dead_letters: DeadLetterSink = (
            dead_letters if dead_letters is not None else JsonLinesDeadLetterSink()
        )
        self.receiver: Emitter | None = None
        # Bounded publishing: connection errors are retried this often, then answered with 503.
        self._publish_policy = {
            "max_retries": publish_retries,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        }
        options = dict(celery_app.conf.broker_transport_options or {})
        options.setdefault("socket_connect_timeout", publish_timeout)
        options.setdefault("socket_timeout", publish_timeout)
        celery_app.conf.broker_transport_options = options
        dispatcher = self

        def emit_event(
            task: Task[t.Any, t.Any],
            form: dict[str, t.Any],
            carrier: dict[str, str] | None = None,
        ) -> dict[str, t.Any]:
            return dispatcher.run_task(task, form, carrier)

        def register(function: t.Callable[..., t.Any], name: str) -> Task[t.Any, t.Any]:
            # Both tasks the same way.
            task: Task[t.Any, t.Any] = celery_app.task(
                name=name,
                bind=True,
                shared=False,
                # After the handlers ran, not when the worker took the message: a worker that
                # dies mid-handler leaves the message to be delivered again.
                acks_late=True,
                # ... and when the pool process running it dies, the message goes back to the
                # queue.
                reject_on_worker_lost=True,
                max_retries=max_retries,
                serializer="json",
                # Nobody reads these results; and a web process that waits for results
                # subscribes to the result backend on every send, which breaks for good when it
                # restarts.
                ignore_result=True,
            )(function)
            return task

        self.task = register(emit_event, task_name)

        def emit_envelope(
            task: Task[t.Any, t.Any],
            forms: list[dict[str, t.Any]],
            carriers: list[dict[str, str] | None] | None = None,
            attempt: int = 1,
        ) -> dict[str, t.Any]:
            return dispatcher.run_envelope(task, forms, carriers, attempt)

        #: The task of ``mode="envelope"``: every event of one request, run in order. It
        #: retries by publishing a task for the events that failed, not with Celery's retry.
        self.envelope_task = register(emit_envelope, f"{task_name}.envelope")

    def __repr__(self) -> str:
        return f"<CeleryDispatcher queue={self.queue!r} task={self.task.name!r} mode={self.mode!r}>"

    def attach(self, receiver: Emitter) -> None:
        """Run events on ``receiver`` in the worker; ``Receiver(dispatcher=...)`` calls this.

        :raises ConfigurationError: the dispatcher already serves another receiver.
        """
        if self.receiver is not None and self.receiver is not receiver:
            raise ConfigurationError(
                f"{self!r} already serves another Receiver; give each receiver its own "
                "CeleryDispatcher with its own task_name."
            )
        self.receiver = receiver

    # -- the web side ------------------------------------------------------------------------

    def dispatch(self, events: t.Sequence[Event], emit: Emit) -> t.Sequence[HandlerFailure]:
        """Publish one task per event (or one for all, per envelope); answer only when the
        broker took every one.

        When the broker fails halfway, the request is refused and the tasks already published
        stay queued: the sender's resend runs those events twice (at least once, never lost).

        :raises DispatchUnavailableError: the broker could not be reached.
        """
        if not events:
            return ()
        # Serialize everything before publishing anything: an event that cannot be sent should
        # fail the request before the first task is out.
        forms = [event_to_dict(event) for event in events]
        carriers: list[dict[str, str] | None] = [None] * len(events)
        if listened(signals.task_publishing, self):
            for number, event in enumerate(events):
                carrier: dict[str, str] = {}
                notify(self, signals.task_publishing, event=event, carrier=carrier)
                carriers[number] = carrier or None
        calls: list[tuple[Task[t.Any, t.Any], tuple[t.Any, ...]]]
        if self.mode == "envelope":
            calls = [(self.envelope_task, (forms, carriers) if any(carriers) else (forms,))]
        else:
            calls = [
                (self.task, (form,) if carried is None else (form, carried))
                for form, carried in zip(forms, carriers, strict=True)
            ]
        sent = 0
        try:
            with self.app.producer_or_acquire() as producer:
                for task, args in calls:
                    task.apply_async(
                        args,
                        queue=self.queue,
                        producer=producer,
                        retry=True,
                        retry_policy=self._publish_policy,
                    )
                    sent += 1
        except (OperationalError, OSError) as error:
            logger.warning(
                "Broker unreachable; refused %d task(s) (%d already published): %s",
                len(calls) - sent,
                sent,
                error,
            )
            raise DispatchUnavailableError(
                f"The task broker cannot be reached ({error}); send again in "
                f"{self.retry_after:g} s.",
                retry_after=self.retry_after,
            ) from error
        return ()

    # -- the worker side ---------------------------------------------------------------------

    def run_task(
        self,
        task: Task[t.Any, t.Any],
        form: dict[str, t.Any],
        carrier: dict[str, str] | None = None,
    ) -> dict[str, t.Any]:
        """The body of the Celery task: rebuild the event, emit it, retry or dead-letter.

        :param carrier: what subscribers of ``task_publishing`` put in for the worker.
        """
        attempt = task.request.retries + 1
        try:
            event = event_from_dict(form)
        except ValueError as error:
            # Retrying cannot fix a form this release cannot read; a newer release can replay it.
            logger.error("Task %s carries an unreadable event: %s", task.request.id, error)
            self._bury(DeadLetter.from_error(form, error, attempts=attempt), task)
            return {"handled": False, "dead_letters": 1}
        receiver = self._worker_receiver()
        if listened(signals.task_started, self) or listened(signals.task_finished, self):
            notify(self, signals.task_started, event=event, carrier=carrier or {}, attempt=attempt)
            try:
                return self._run(task, event, receiver, attempt)
            finally:
                notify(self, signals.task_finished, event=event, attempt=attempt)
        return self._run(task, event, receiver, attempt)

    def _run(
        self, task: Task[t.Any, t.Any], event: Event, receiver: Emitter, attempt: int
    ) -> dict[str, t.Any]:
        result: RunResult
        try:
            result = tuple(receiver.emit(event))
        except Exception as error:
            # Around the handlers (a de-duplication store, say), not in one of them.
            logger.exception("Emitting %s raised", preview(event, 500))
            result = error
        if not result:
            return {"handled": True, "attempts": attempt}
        if task.request.retries < self.max_retries:
            cause = result if isinstance(result, Exception) else result[0].error
            self._retry(task, self._countdown(task.request.retries, (cause,)), cause)
        buried = self._give_up(task, event, result, attempt)
        return {"handled": False, "dead_letters": buried, "attempts": attempt}

    def _countdown(self, retries: int, causes: t.Iterable[BaseException]) -> float:
        """The backoff before retry number ``retries + 1``, or longer when emit said when to
        come back (its own "not now": the store failed, another delivery holds the event)."""
        countdown = self.backoff(retries)
        for cause in causes:
            if isinstance(cause, DispatchUnavailableError):
                countdown = max(countdown, cause.retry_after)
        return countdown

    def _give_up(
        self, task: Task[t.Any, t.Any], event: Event, result: RunResult, attempt: int
    ) -> int:
        """Keep ``event`` as dead letters, one per failure (or one for the error around its
        handlers), and send it on ``event_dead_lettered``; returns how many letters."""
        failures: tuple[HandlerFailure, ...] = ()
        if isinstance(result, Exception):
            letters = [DeadLetter.from_error(event, result, attempts=attempt)]
        else:
            letters = [DeadLetter.from_failure(f, attempts=attempt) for f in result]
            failures = result
        logger.error(
            "Giving up %s after %d attempt(s); kept as a dead letter", preview(event, 500), attempt
        )
        for letter in letters:
            self._bury(letter, task)
        notify(self, signals.event_dead_lettered, event=event, failures=failures, attempts=attempt)
        return len(letters)

    def run_envelope(
        self,
        task: Task[t.Any, t.Any],
        forms: list[dict[str, t.Any]],
        carriers: list[dict[str, str] | None] | None,
        attempt: int,
    ) -> dict[str, t.Any]:
        """The body of the envelope task: run every event in order, then publish the ones that
        did not succeed again (one task, after the backoff) or, after the last try, bury them.

        :param attempt: which try this is of the events it carries (1 for the first).
        """
        receiver = self._worker_receiver()
        carried = carriers or [None] * len(forms)
        events: list[tuple[Event, dict[str, t.Any], dict[str, str] | None]] = []
        buried = 0
        for form, carrier in zip(forms, carried, strict=True):
            try:
                events.append((event_from_dict(form), form, carrier))
            except ValueError as error:
                logger.error("Task %s carries an unreadable event: %s", task.request.id, error)
                self._bury(DeadLetter.from_error(form, error, attempts=attempt), task)
                buried += 1
        observed = listened(signals.task_started, self) or listened(signals.task_finished, self)
        if observed:
            for event, _, carrier in events:
                notify(
                    self, signals.task_started, event=event, carrier=carrier or {}, attempt=attempt
                )
        results: t.Sequence[RunResult]
        try:
            results = receiver.emit_batch([event for event, _, _ in events])
        except Exception as error:
            # Around the handlers (a de-duplication store, say), not in one of them: every
            # event of the task is tried again, or buried, as one whose emit raised.
            logger.exception("Emitting an envelope of %d event(s) raised", len(events))
            results = [error] * len(events)
        finally:
            if observed:
                for event, _, _ in events:
                    notify(self, signals.task_finished, event=event, attempt=attempt)
        # The events that did not succeed, with what each got: its failures, or the error
        # around them ("not now" from its store, say).
        again = [
            (event, form, carrier, result)
            for (event, form, carrier), result in zip(events, results, strict=True)
            if isinstance(result, Exception) or result
        ]
        if not again:
            return {"handled": len(events), "dead_letters": buried, "attempts": attempt}
        if attempt <= self.max_retries:
            causes = [result for *_, result in again if isinstance(result, Exception)]
            countdown = self._countdown(attempt - 1, causes)
            self._publish_again([(f, c) for _, f, c, _ in again], attempt + 1, countdown)
            return {"handled": len(events) - len(again), "retried": len(again)}
        for event, _, _, result in again:
            buried += self._give_up(task, event, result, attempt)
        return {"handled": len(events) - len(again), "dead_letters": buried, "attempts": attempt}

    def _publish_again(
        self,
        again: t.Sequence[tuple[dict[str, t.Any], dict[str, str] | None]],
        attempt: int,
        countdown: float,
    ) -> None:
        """One envelope task for the events that did not succeed, ``countdown`` seconds out."""
        forms = [form for form, _ in again]
        carriers = [carrier for _, carrier in again]
        logger.warning(
            "%d event(s) of an envelope did not succeed; trying them again in %.1f s (attempt %d)",
            len(forms),
            countdown,
            attempt,
        )
        try:
            self.envelope_task.apply_async(
                (forms, carriers, attempt),
                queue=self.queue,
                countdown=countdown,
                retry=True,
                retry_policy=self._publish_policy,
            )
        except (OperationalError, OSError) as error:
            # The envelope goes back to the queue whole: what succeeded is run again (at least
            # once; a de-duplication store skips it).
            logger.error("Could not publish the retry (%s); requeueing the envelope", error)
            raise Reject(str(error), requeue=True) from None

    def _worker_receiver(self) -> Emitter:
        receiver = self.receiver
        if receiver is None:
            raise ConfigurationError(
                f"{self!r} has no Receiver in this worker: build the Receiver with "
                "Receiver(dispatcher=...) in the module the worker imports (-A)."
            )
        return receiver

    def backoff(self, retries: int) -> float:
        """Seconds to wait before retry number ``retries + 1``."""
        delay = min(self.retry_backoff_max, self.retry_backoff * 2**retries)
        return random.uniform(0, delay) if self.retry_jitter else delay

    def _retry(
        self,
        task: Task[t.Any, t.Any],
        countdown: float,
        cause: BaseException,
        max_retries: int | None = None,
    ) -> t.NoReturn:
        try:
            exc = cause if isinstance(cause, Exception) else None
            raise task.retry(countdown=countdown, exc=exc, max_retries=max_retries)
        except Reject as rejected:
            # Celery could not publish the retry and would drop the message; put it back in the
            # queue instead (or, with the broker gone, leave it unacknowledged for redelivery).
            reason = rejected.args[0] if rejected.args else None
            logger.error("Could not schedule a retry (%s); requeueing the task", reason)
            raise Reject(reason, requeue=True) from None

    def _bury(self, letter: DeadLetter, task: Task[t.Any, t.Any]) -> None:
        error = store(self.dead_letters, letter)
        if error is not None:
            # Keep the event in the broker until the sink works again, slowly.
            self._retry(task, self.retry_backoff_max, error, task.request.retries + 1)
