"""``Receiver``: client keys, limits, the handler registry and dispatch; nothing about HTTP.

The flow is one way: a body comes in through :meth:`Receiver.handle`, is read by a
:class:`~yalgaar_receiver.parsing.Parser`, checked against the client keys, and its events go to
the dispatcher, which runs each one through :meth:`Receiver.emit`. What comes back is an
:class:`~yalgaar_receiver.Outcome` or one of the refusals in :mod:`~yalgaar_receiver.exceptions`;
turning those into HTTP answers is the Flask adapter's job (:mod:`yalgaar_receiver.flask`).

Imports: the core and the delivery room's interfaces; never an adapter.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import typing as t
import warnings
from datetime import datetime, timezone

from blinker import Signal

from . import settings, signals
from .delivery.dead_letters import DeadLetter, DeadLetterSink, store
from .delivery.dedupe import (
    BUSY_RETRY_AFTER,
    STORE_RETRY_AFTER,
    Attempts,
    BatchDedupeStore,
    Claim,
    ClaimState,
    DedupeStore,
    KeyFunction,
    LeaseKeeper,
    MemoryAttempts,
    attempt_key,
    event_key,
)
from .delivery.dispatch import Dispatcher, Emit, InlineDispatcher, Unit
from .encryption import MessageKeys
from .events import (
    BindEvent,
    Event,
    HandlerFailure,
    MessageEvent,
    Outcome,
    PresenceEvent,
    Rejection,
    UnbindEvent,
    UnknownEvent,
)
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    DispatchUnavailableError,
    InvalidEnvelopeError,
    PayloadTooLargeError,
    YalgaarError,
)
from .parsing import Envelope, Parser, batch_of
from .payloads import MessageDecorator, load_payload
from .routing import (
    Decorator,
    Prepare,
    Registry,
    Route,
    deliver,
    handler_name,
    listened,
    notify,
)
from .schemas import MessageItemSchema, PresenceItemSchema
from .wire import preview

__all__ = ["REFUSALS", "Receiver"]

P = t.ParamSpec("P")
R = t.TypeVar("R")

#: What a request loaded of its messages' payloads: by ``id`` of the event, then of the schema,
#: the event copy with its payload, or ``None`` for a refusal; ``None`` without payload schemas.
Loaded = t.Mapping[int, t.Mapping[int, MessageEvent | None]] | None

logger = logging.getLogger("yalgaar_receiver")

#: Seconds between two warnings of possible loss at the sender.
_LOSS_WARNING_INTERVAL: t.Final = 60.0

#: The refusals of a whole request by :meth:`Receiver.handle`; each is sent on
#: ``envelope_rejected``.
REFUSALS: t.Final = (InvalidEnvelopeError, AuthenticationError, PayloadTooLargeError)

# Which signals carry which event, most specific first: ``bind`` then ``presence``. Looked up
# along the MRO so that a subclass of an event class still has signals.
_EVENT_SIGNALS: t.Final[t.Mapping[type[Event], tuple[Signal, ...]]] = {
    BindEvent: (signals.bind, signals.presence),
    UnbindEvent: (signals.unbind, signals.presence),
    PresenceEvent: (signals.presence,),
    MessageEvent: (signals.message,),
    UnknownEvent: (signals.unknown_event,),
}


class Receiver:
    """Receives Yalgaar webhooks: reads, authenticates, validates and dispatches them.

    :param client_keys: the ``clientKey`` values to accept; several allow a key to be rotated.
        With none, the Flask blueprint takes them from ``YALGAAR_CLIENT_KEYS``.
    :param allow_unauthenticated: accept envelopes whatever their key when no key is configured
        (for local development; keys that *are* configured are always checked).
    :param strict: refuse a whole request (400) when any item is malformed, instead of
        dispatching the good items and reporting the bad ones.
    :param max_items: the most items accepted in one request, over all envelopes (413 above).
    :param max_depth: the deepest JSON nesting accepted (400 above).
    :param dispatcher: when and where handlers run; :class:`InlineDispatcher` by default.
    :param dedupe: where de-duplication keys live (see :mod:`yalgaar_receiver.delivery.dedupe`);
        with one, an event already handled within the store's ttl is not run again. ``None``
        (the default) runs every delivery.
    :param dedupe_key: the key of an event;
        :func:`~yalgaar_receiver.delivery.dedupe.event_key` by default. Return ``None`` to run
        an event without de-duplication.
    :param presence_schema: loads the items of Presence envelopes: an instance of
        :class:`~yalgaar_receiver.schemas.PresenceItemSchema` or of a subclass, whose added
        fields, validators and hooks apply (their messages appear in the item's rejection).
    :param message_schema: the same for Message envelopes
        (:class:`~yalgaar_receiver.schemas.MessageItemSchema`).
    :param loader: ``"derived"`` (the default) loads items through a loader derived from the
        schemas' declared fields wherever that gives what ``Schema.load`` gives;
        ``"marshmallow"`` loads every envelope and item with ``Schema.load`` itself.
    :param max_attempts: how many times an event may fail in the request before it is given
        up: kept as a dead letter, sent on ``event_dead_lettered`` and acknowledged, so that a
        sender that resends failed requests does not send it for ever. Attempts are counted in
        ``dedupe`` when it counts (both stores do, across workers), else in this process.
        ``None`` never gives up. Only failures known before the answer count (the inline
        dispatcher's); a background dispatcher keeps its own dead letters.
    :param message_keys: the AES keys publishers encrypt messages with (see
        :mod:`~yalgaar_receiver.encryption`), tried in order, or a
        :class:`~yalgaar_receiver.encryption.MessageKeys` holding them; a message one of them
        decrypts reaches handlers as its text, with ``event.encrypted`` set. Needs the
        ``crypto`` extra.
    :param undecryptable: with ``message_keys``, a message none of them decrypts is rejected as
        an item (``"reject"``, the default) or delivered as it came (``"deliver"``, what
        Yalgaar's SDKs do).
    :param sender_cap: the most items the sender puts in one request: Yalgaar sends at most
        200 events per 2-second window and silently drops the rest, so an envelope that holds
        this many is the sign of events the receiver will never see. It is sent on
        ``possible_loss`` and logged (a warning at most once a minute). ``None`` turns it off.
    :param clock: seconds from a monotonic clock, for the once-a-minute warning; tests pass
        a fake one.
    :param dead_letters: where given-up events are kept
        (:class:`~yalgaar_receiver.delivery.JsonLinesDeadLetterSink` or
        :class:`~yalgaar_receiver.delivery.RedisDeadLetterSink`); ``None`` logs each one at
        ERROR with its serialized form, from which it can be replayed.
    :param max_body_bytes: deprecated; pass it to ``create_blueprint()`` or set
        ``YALGAAR_MAX_BODY_BYTES``.
    :param fail_on_handler_error: deprecated; pass it to ``create_blueprint()`` or set
        ``YALGAAR_FAIL_ON_HANDLER_ERROR``.
    :raises ConfigurationError: a setting that cannot work.
    """

    def __init__(
        self,
        client_keys: t.Iterable[str] | None = None,
        *,
        allow_unauthenticated: bool = False,
        strict: bool = False,
        max_items: int = 10_000,
        max_depth: int = 64,
        dispatcher: Dispatcher | None = None,
        dedupe: DedupeStore | None = None,
        dedupe_key: KeyFunction = event_key,
        presence_schema: PresenceItemSchema | None = None,
        message_schema: MessageItemSchema | None = None,
        loader: str = "derived",
        max_attempts: int | None = 5,
        dead_letters: DeadLetterSink | None = None,
        message_keys: t.Iterable[str] | MessageKeys | None = None,
        undecryptable: str = "reject",
        sender_cap: int | None = 200,
        clock: t.Callable[[], float] = time.monotonic,
        max_body_bytes: int | None = None,
        fail_on_handler_error: bool | None = None,
    ) -> None:
        self._set_keys(() if client_keys is None else client_keys)
        self.allow_unauthenticated = settings.flag(allow_unauthenticated, "allow_unauthenticated")
        self.strict = settings.flag(strict, "strict")
        self.max_items = settings.positive_int(max_items, "max_items")
        self.max_depth = settings.positive_int(max_depth, "max_depth")
        self.dispatcher: Dispatcher = dispatcher if dispatcher is not None else InlineDispatcher()
        if dedupe is not None and not isinstance(dedupe, DedupeStore):
            raise ConfigurationError(
                f"dedupe must be a store with claim, done and release methods (such as "
                f"MemoryDedupeStore()), not {dedupe!r}."
            )
        if not callable(dedupe_key):
            raise ConfigurationError(
                f"dedupe_key must be a function of the event, not {dedupe_key!r}."
            )
        self.dedupe = dedupe
        self.dedupe_key = dedupe_key
        # Decided once: a check against a runtime protocol walks its members on every call,
        # which would cost a request more than the rest of a one-item webhook. A store that
        # takes batches claims a request's keys together, and renews the claims of running
        # events past the lease.
        self._batches: BatchDedupeStore | None = (
            dedupe if isinstance(dedupe, BatchDedupeStore) else None
        )
        self._leases = None if self._batches is None else LeaseKeeper(self._batches)
        self.max_attempts = (
            None if max_attempts is None else settings.positive_int(max_attempts, "max_attempts")
        )
        self.dead_letters = dead_letters
        self.sender_cap = (
            None if sender_cap is None else settings.positive_int(sender_cap, "sender_cap")
        )
        self._clock = clock
        self._loss_warned: float | None = None  # when possible loss was last logged
        self._attempts: Attempts = dedupe if isinstance(dedupe, Attempts) else MemoryAttempts()
        # (source_hint, source) pairs already warned about, so that the log says it once.
        self._mismatches: set[tuple[str, str]] = set()
        self.parser = Parser(
            presence_schema=presence_schema,
            message_schema=message_schema,
            max_depth=self.max_depth,
            loader=loader,
            message_keys=(
                message_keys
                if message_keys is None or isinstance(message_keys, MessageKeys)
                else MessageKeys(message_keys)
            ),
            undecryptable=undecryptable,
        )
        #: What the Flask adapter takes as its defaults for the settings that moved to it.
        self.blueprint_defaults: dict[str, t.Any] = {}
        for name, value in (
            ("max_body_bytes", max_body_bytes),
            ("fail_on_handler_error", fail_on_handler_error),
        ):
            if value is not None:
                warnings.warn(
                    f"Receiver({name}=...) is deprecated: it decides how the HTTP request is "
                    f"read or answered, so it belongs to the blueprint. Pass "
                    f"create_blueprint(receiver, {name}=...) or set "
                    f"{settings.config_key(name)}.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                self.blueprint_defaults[name] = value
        # The signals' sender: this receiver, and every copy made by with_client_keys().
        self._sender: Receiver = self
        # Whether requests run as units of work (enable_units()); read on the sender, so that
        # the copies follow it.
        self._units = False
        self._registry: Registry[type[Event]] = Registry(
            lambda key, event_class: issubclass(event_class, key)
        )
        #: Handlers of :class:`BindEvent`.
        self.on_bind = Decorator(self._registry, BindEvent)
        #: Handlers of :class:`UnbindEvent`.
        self.on_unbind = Decorator(self._registry, UnbindEvent)
        #: Handlers of every presence event, whatever its action (unknown actions included).
        self.on_presence = Decorator(self._registry, PresenceEvent)
        #: Handlers of :class:`MessageEvent`.
        #: With ``payload=schema``, the handler gets ``event.payload`` loaded by the schema
        #: (see :mod:`~yalgaar_receiver.payloads`).
        self.on_message = MessageDecorator(self._registry, MessageEvent)
        #: Handlers of :class:`UnknownEvent` (an envelope ``source`` this package does not know).
        self.on_unknown = Decorator(self._registry, UnknownEvent)
        #: Handlers of every event.
        self.on_event = Decorator(self._registry, Event)
        # A dispatcher that runs events in another process (a Celery worker) must find this
        # receiver there; it asks for it with an ``attach`` method.
        attach = getattr(self.dispatcher, "attach", None)
        if callable(attach):
            attach(self)

    def __repr__(self) -> str:
        # Never the keys themselves: a repr ends up in logs.
        return f"<Receiver keys={len(self.client_keys)} handlers={len(self._registry)}>"

    def with_client_keys(self, client_keys: t.Iterable[str]) -> Receiver:
        """A receiver that accepts ``client_keys`` and shares everything else with this one.

        The copy shares the handlers (a handler decorated on either reaches both), the
        dispatcher, the de-duplication store and the schemas, and it sends every signal as
        this receiver, so subscribers, trackers and captures connected to this one see its
        events. The Flask adapter makes one per app whose keys come from
        ``YALGAAR_CLIENT_KEYS``, so that one receiver serves apps with different keys.
        """
        child = copy.copy(self)
        child._set_keys(client_keys)
        return child

    def _set_keys(self, client_keys: t.Iterable[str]) -> None:
        #: The ``clientKey`` values accepted.
        self.client_keys: tuple[str, ...] = settings.text_list(
            client_keys, "client_keys", item="key", refuse_text=True
        )
        self._secrets = settings.Secrets(self.client_keys)

    def enable_units(self) -> None:
        """Run every request, envelope batch and :meth:`emit` of this receiver (and its copies)
        as a :class:`~yalgaar_receiver.delivery.dispatch.Unit`, so that a subscriber can hand
        work to its end with :func:`~yalgaar_receiver.delivery.dispatch.defer` and do it for
        many events at once.

        A :class:`~yalgaar_receiver.presence.PresenceTracker` calls this; so must a subscriber
        of the application's own that defers. Off until then: a unit costs each request a few
        microseconds, and without one :func:`~yalgaar_receiver.delivery.dispatch.defer`
        answers ``False`` and the subscriber does its work at once, which is correct too.
        """
        self._sender._units = True

    def check(self) -> None:
        """Raise :class:`~yalgaar_receiver.ConfigurationError` when this receiver can
        authenticate nothing: no client key, and ``allow_unauthenticated`` off.

        :meth:`handle` calls this first; the Flask adapter calls it when the blueprint is
        registered, so that a deployment without keys fails at start-up.
        """
        if not self.client_keys and not self.allow_unauthenticated:
            raise ConfigurationError(
                "The receiver has no client key to check webhooks against. Pass "
                "Receiver(client_keys=[...]) or set YALGAAR_CLIENT_KEYS; for local testing "
                "only, pass allow_unauthenticated=True."
            )

    # -- receiving -------------------------------------------------------------------------

    def handle(
        self,
        body: bytes | str | object,
        *,
        source_hint: str | None = None,
        client_keys: t.Sequence[str] | None = None,
    ) -> Outcome:
        """Read, authenticate, validate and dispatch one webhook body.

        :param body: the raw body (``bytes`` or ``str``) or JSON that is already decoded.
        :param source_hint: ``"presence"`` or ``"message"`` when the body came to the endpoint
            of that source; used for envelopes without a ``source``.
        :param client_keys: deprecated; use :meth:`with_client_keys`.
        :raises PayloadTooLargeError: too many items.
        :raises InvalidEnvelopeError: not JSON, too deep, no envelope, or (strict) a bad item.
        :raises AuthenticationError: an envelope's ``clientKey`` is missing or not configured.
        :raises ConfigurationError: no key is configured and ``allow_unauthenticated`` is off.
        :raises DispatchUnavailableError: the events cannot be taken now; send again later.
        """
        if client_keys is not None:
            warnings.warn(
                "Receiver.handle(client_keys=...) is deprecated: call it on "
                "receiver.with_client_keys(keys) instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            if not self.client_keys:
                return self.with_client_keys(client_keys).handle(body, source_hint=source_hint)
        if not self.client_keys and not self.allow_unauthenticated:
            self.check()  # raises
        try:
            envelopes, events, rejected = self._read(body, source_hint)
        except REFUSALS as error:
            self.refused(error)
            raise
        if self.sender_cap is not None:
            for envelope in envelopes:
                if len(envelope.items) >= self.sender_cap:
                    self._possible_loss(envelope)
        if listened(signals.envelope_received, self._sender):
            self.notify(signals.envelope_received, batch=batch_of(envelopes, events, rejected))
        for rejection in rejected:
            self.notify(signals.event_rejected, rejection=rejection)
        loaded: Loaded = None
        if self._registry.has_payloads:
            # Loaded now, so that a refused payload is in the answer whichever the dispatcher;
            # the handlers in this process take what was loaded here.
            loaded, refused = self._load_payloads(envelopes, events, rejected)
            rejected += refused
        # Duplicates found while the dispatcher runs (all of them, inline) go into the outcome;
        # a background dispatcher finds them later, and only the signal sees those.
        duplicates: list[Event] = []
        # With units on (a PresenceTracker turns them on), the events the dispatcher runs on
        # this thread are one unit: what their subscribers defer is done for all of them at
        # its end, before their claims settle.
        unit = Unit() if self._sender._units else None
        # A store that takes a batch claims the request's keys together (two round trips per
        # request); one of the application's own claims each event as it runs.
        claims = None if self._batches is None else _BatchClaims(self, events, unit)
        emit: Emit
        if self.dedupe is None and loaded is None:
            emit = self._run  # what emit() comes down to without a store or payloads
        else:

            def emit(event: Event) -> tuple[HandlerFailure, ...]:
                return self._emit(event, duplicates, loaded, claims, unit)

        try:
            dispatched, late = self._in_unit(unit, claims, self.dispatcher.dispatch, events, emit)
        except PayloadTooLargeError as error:
            # More events than a dispatcher's queue can ever hold: refused as a whole, too.
            self.refused(error)
            raise
        failures = [*dispatched, *late]
        dead: tuple[Event, ...] = ()
        if failures and self.max_attempts is not None:
            failures, dead = self._give_up_on(failures)
        return Outcome(
            accepted=events,
            rejected=rejected,
            failed=tuple(failures),
            duplicates=tuple(duplicates),
            dead_lettered=dead,
            warnings=self._mismatched(envelopes, source_hint) if source_hint else (),
        )

    def _give_up_on(
        self, failures: t.Sequence[HandlerFailure]
    ) -> tuple[list[HandlerFailure], tuple[Event, ...]]:
        """Count one more attempt of each failed event; keep as dead letters, and acknowledge,
        those that have had ``max_attempts``. Returns the failures left, and the events given
        up."""
        assert self.max_attempts is not None
        by_event: dict[int, list[HandlerFailure]] = {}
        for failure in failures:
            by_event.setdefault(id(failure.event), []).append(failure)
        left: list[HandlerFailure] = []
        dead: list[Event] = []
        for group in by_event.values():
            event = group[0].event
            try:
                attempts = self._attempts.attempt(attempt_key(event, self.dedupe_key))
            except Exception:
                # Not counted (the store is down): the failure stands, and the sender retries.
                logger.warning(
                    "Could not count the attempts of %s", preview(event, 500), exc_info=True
                )
                left.extend(group)
                continue
            if attempts < self.max_attempts:
                left.extend(group)
                continue
            self._dead_letter(event, group, attempts)
            dead.append(event)
        return left, tuple(dead)

    def _dead_letter(self, event: Event, failures: list[HandlerFailure], attempts: int) -> None:
        logger.error(
            "Gave up on %s after %d failed attempt(s); kept as a dead letter and acknowledged",
            preview(event, 500),
            attempts,
        )
        for failure in failures:
            letter = DeadLetter.from_failure(failure, attempts=attempts)
            if self.dead_letters is None:
                logger.error("Dead letter (no sink configured): %s", letter.to_json())
            else:
                store(self.dead_letters, letter)
        if self.dedupe is not None:
            # Acknowledged: a resend is a duplicate, not another attempt.
            key = self.dedupe_key(event)
            if key is not None:
                try:
                    claim = self.dedupe.claim(key)
                    if claim.state is ClaimState.CLAIMED:
                        self.dedupe.done(claim)
                except Exception:
                    logger.warning("Could not mark %s done", preview(event, 500), exc_info=True)
        self.notify(
            signals.event_dead_lettered,
            event=event,
            failures=tuple(failures),
            attempts=attempts,
        )

    def _possible_loss(self, envelope: Envelope) -> None:
        """Report an envelope as full as the sender makes them: events were probably dropped."""
        now = self._clock()
        warn = self._loss_warned is None or now - self._loss_warned >= _LOSS_WARNING_INTERVAL
        listening = listened(signals.possible_loss, self._sender)
        if not (warn or listening):
            return  # the common case under a steady overload: nothing to count for
        channels: dict[str, int] = {}
        for item in envelope.items:
            channel = item.get("channel") if isinstance(item, dict) else None
            name = channel.strip() if isinstance(channel, str) else str(channel)
            channels[name] = channels.get(name, 0) + 1
        if warn:
            self._loss_warned = now
            busiest = sorted(channels.items(), key=lambda pair: -pair[1])[:3]
            logger.warning(
                "An envelope held %d items, the most Yalgaar sends in one request "
                "(sender_cap=%d): events of that window were probably dropped by the sender. "
                "Spread the publishers over time or channels, or ask Yalgaar for a higher cap. "
                "Busiest channels: %s. (Said at most once a minute.)",
                len(envelope.items),
                self.sender_cap,
                ", ".join(f"{preview(name, 60)} ({count})" for name, count in busiest),
            )
        if listening:
            self.notify(
                signals.possible_loss,
                source=envelope.kind or "",
                items=len(envelope.items),
                channels=channels,
                at=datetime.now(timezone.utc),
            )

    def _mismatched(self, envelopes: t.Sequence[Envelope], source_hint: str) -> tuple[str, ...]:
        """The warnings for envelopes whose source is the other URL's."""
        found: list[str] = []
        for envelope in envelopes:
            kind = envelope.kind
            if kind not in self.parser.kinds or kind == source_hint:
                continue
            assert kind is not None
            text = (
                f"A {kind.capitalize()} envelope came to the {source_hint.capitalize()} URL; it "
                f"was read as {kind}. Check the webhook URLs in the Yalgaar dashboard: each "
                "source has its own."
            )
            found.append(text)
            if (source_hint, kind) not in self._mismatches:
                self._mismatches.add((source_hint, kind))
                logger.warning("%s (said once per URL and source)", text)
            self.notify(signals.source_mismatch, source_hint=source_hint, source=kind)
        return tuple(dict.fromkeys(found))

    def _read(
        self, body: object, source_hint: str | None
    ) -> tuple[list[Envelope], tuple[Event, ...], tuple[Rejection, ...]]:
        envelopes = self.parser.read(body, source_hint=source_hint)
        count = sum(len(envelope.items) for envelope in envelopes)
        if count > self.max_items:
            raise PayloadTooLargeError(
                f"The request has {count} items, more than max_items={self.max_items}.",
                limit=self.max_items,
                actual=count,
            )
        if self.client_keys:
            self._authenticate(envelopes)
        events, rejected = self.parser.load_items(envelopes)
        if self.strict and rejected:
            raise InvalidEnvelopeError(
                f"{len(rejected)} item(s) are malformed and the receiver is strict; "
                "see 'rejected' for each one.",
                messages={"data": ["Malformed items; see 'rejected'."]},
                rejected=rejected,
            )
        return envelopes, events, rejected

    def _authenticate(self, envelopes: t.Sequence[Envelope]) -> None:
        for position, envelope in enumerate(envelopes):
            if envelope.client_key is None:
                raise AuthenticationError(f"Envelope {position} has no clientKey string.")
            if not self._secrets.matches(envelope.client_key):
                raise AuthenticationError(
                    f"The clientKey of envelope {position} matches no configured key."
                )

    def refused(self, error: YalgaarError) -> None:
        """Log a refused request and send ``envelope_rejected``.

        :meth:`handle` calls this for its own refusals; an adapter that refuses a request
        before calling :meth:`handle` (a body over the size limit, a failed URL token) calls
        it too, so that every refusal is seen the same way.
        """
        level = logging.WARNING if isinstance(error, AuthenticationError) else logging.INFO
        logger.log(level, "Refused a webhook request: %s", error)
        self.notify(signals.envelope_rejected, error=error)

    # -- dispatching -----------------------------------------------------------------------

    def handlers_for(self, event: Event) -> list[t.Callable[..., t.Any]]:
        """The decorated handlers ``event`` would reach, in the order they would be called."""
        return [r.handler for r in self._registry.routes_for(type(event)) if r.matches(event)]

    def emit(self, event: Event) -> tuple[HandlerFailure, ...]:
        """Run one event through its handlers, then its signals; return the calls that raised.

        Every handler and subscriber is called even when an earlier one raised (see
        :func:`~yalgaar_receiver.routing.deliver`). Dispatchers call this; so do tests and
        replays that already hold an event.

        With ``dedupe``, the event's key is claimed first. A duplicate (a key marked done) is not
        run but sent on ``duplicate_event``. The key is marked done only when every call
        succeeded; any failure releases it, so that a resend runs the event again.

        :raises DispatchUnavailableError: with ``dedupe`` only: the store failed, or another
            delivery of the same event is running right now. Nothing was run; try again later.
        """
        if not self._sender._units:
            return self._emit(event, None, None, None, None)
        unit = Unit()
        failures, late = self._in_unit(unit, None, self._emit, event, None, None, None, unit)
        return (*failures, *late) if late else failures

    def emit_batch(
        self, events: t.Sequence[Event]
    ) -> list[tuple[HandlerFailure, ...] | DispatchUnavailableError]:
        """Run the events of one batch through :meth:`emit`, in order, each on its own.

        With a store that takes batches (both of the package's do), their keys are claimed
        together and settled together, as for a request. What :meth:`emit` raises for one event
        (the store failed, another delivery is running it) is that event's answer, and the
        others still run: a worker given a whole envelope retries only what did not succeed.

        :returns: for each event, the calls that raised, or the refusal of that event for now.
        """
        unit = Unit() if self._sender._units else None
        claims = None if self._batches is None else _BatchClaims(self, events, unit)

        def run_all() -> list[tuple[HandlerFailure, ...] | DispatchUnavailableError]:
            results: list[tuple[HandlerFailure, ...] | DispatchUnavailableError] = []
            for event in events:
                try:
                    results.append(self._emit(event, None, None, claims, unit))
                except DispatchUnavailableError as error:
                    results.append(error)
            return results

        results, late = self._in_unit(unit, claims, run_all)
        if late:
            position = {id(event): number for number, event in enumerate(events)}
            for failure in late:
                number = position[id(failure.event)]
                ran = results[number]
                assert not isinstance(ran, DispatchUnavailableError)  # it ran: work was deferred
                results[number] = (*ran, failure)
        return results

    def _in_unit(
        self,
        unit: Unit | None,
        claims: _BatchClaims | None,
        call: t.Callable[P, R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> tuple[R, list[HandlerFailure]]:
        """``call(*args, **kwargs)``, as ``unit`` when there is one; its result, and the
        failures of the unit's deferred work. When the call raises, the events that ran still
        do their deferred work, and the claims of the events it did not run are released."""
        try:
            result = call(*args, **kwargs) if unit is None else unit.run(call, *args, **kwargs)
        except BaseException:
            if unit is not None:
                self._close(unit)
            if claims is not None:
                claims.abandon()
            raise
        return result, ([] if unit is None else self._close(unit))

    def _close(self, unit: Unit) -> list[HandlerFailure]:
        """End ``unit``: do its deferred work, settle the claims held for it, and report each
        event whose deferred work failed as a handler failure of that event."""
        failures = unit.close(self._observer_for)
        return [self._report(f.event, f.handler, f.error) for f in failures] if failures else []

    def _observer_for(self, event: Event) -> _Observer | None:
        """What sends the calls made for ``event`` on ``handler_started`` and
        ``handler_finished``; ``None`` while neither has a subscriber for this receiver.

        Asked once per event, so it asks blinker's ``has_receivers_for`` rather than
        :func:`listened`, whose exact answer costs about a microsecond more per event for the
        two signals and would only save sends that reach nobody. The two differ only in the
        case :func:`listened` describes; there this says yes and the sends find nobody, which
        :func:`notify` does correctly.
        """
        sender = self._sender
        started = signals.handler_started.has_receivers_for(sender)
        finished = signals.handler_finished.has_receivers_for(sender)
        if started or finished:
            return _Observer(self, event, started=started, finished=finished)
        return None

    def _emit(
        self,
        event: Event,
        duplicates: list[Event] | None,
        loaded: Loaded,
        claims: _BatchClaims | None,
        unit: Unit | None,
    ) -> tuple[HandlerFailure, ...]:
        found = _UNBATCHED if claims is None else claims.take(event)
        batched = found is not _UNBATCHED
        claim = self._claim(event) if isinstance(found, _Unbatched) else found
        if claim is not None and claim.state is ClaimState.DONE:
            logger.debug("Skipped a duplicate of %s", preview(event, 500))
            if duplicates is not None:
                duplicates.append(event)
            self.notify(signals.duplicate_event, event=event)
            return ()
        ok = False
        try:
            failures = self._run(event, loaded)
            ok = not failures
        finally:
            # On what the handler loop does not isolate (KeyboardInterrupt, SystemExit) too.
            if claims is not None and batched:
                claims.finish(claim, event, ok=ok)
            elif claim is not None and unit is not None and unit.running():
                # Settled once the unit's deferred work is done, which may still fail it.
                unit.on_close(
                    lambda failed: self._settle(claim, event, ok=ok and id(event) not in failed)
                )
            elif claim is not None:
                self._settle(claim, event, ok=ok)
        return failures

    def _claim(self, event: Event) -> Claim | None:
        """Claim ``event``'s key; ``None`` when the event is not de-duplicated."""
        if self.dedupe is None:
            return None
        key = self.dedupe_key(event)
        if key is None:
            return None
        try:
            claim = self.dedupe.claim(key)
        except Exception as error:
            raise self._store_failed(error, preview(event, 500)) from error
        if self._leases is not None:
            self._leases.hold((claim,))
        return self._checked(claim, event)

    def _store_failed(self, error: Exception, what: str) -> DispatchUnavailableError:
        # Neither running the event (it may be a duplicate) nor skipping it (it may not be) is
        # safe; refusing makes the sender keep it and try again.
        logger.warning("The dedupe store failed; refusing %s for now", what, exc_info=error)
        return DispatchUnavailableError(
            f"The de-duplication store failed ({type(error).__name__}); send again later.",
            retry_after=STORE_RETRY_AFTER,
        )

    def _checked(self, claim: Claim, event: Event) -> Claim:
        """The claim to run ``event`` under, or the refusal when another delivery holds it."""
        if claim.state is ClaimState.BUSY:
            logger.info(
                "%s is being handled by another delivery; refusing it for now",
                preview(event, 500),
            )
            raise DispatchUnavailableError(
                "Another delivery of this event is being handled right now; send again later.",
                retry_after=BUSY_RETRY_AFTER,
            )
        return claim

    def _settle(self, claim: Claim, event: Event, *, ok: bool) -> None:
        """Mark a claim done or release it; a store failure here only costs a later duplicate."""
        self._settle_all([(claim, event, ok)])

    def _settle_all(self, outcomes: t.Sequence[tuple[Claim, Event, bool]]) -> None:
        """Mark each claim done (``ok``) or release it, in one batch when the store can."""
        assert self.dedupe is not None
        if self._leases is not None:
            self._leases.drop(claim for claim, _, _ in outcomes)
        pairs = [(claim, ok) for claim, _, ok in outcomes]
        try:
            if self._batches is not None:
                owned = self._batches.settle_many(pairs)
            else:
                owned = [self.dedupe.done(c) if ok else self.dedupe.release(c) for c, ok in pairs]
        except Exception:
            # The claims then expire after the lease: a resend runs those events again, which
            # is at-least-once, never a loss.
            logger.warning(
                "The dedupe store failed to settle the claims on %d event(s), the first %s",
                len(outcomes),
                preview(outcomes[0][1], 500),
                exc_info=True,
            )
            return
        for (_, event, ok), still_owned in zip(outcomes, owned, strict=True):
            if ok and not still_owned:
                logger.warning(
                    "The claim on %s expired before its handlers finished; raise the "
                    "store's lease, or another delivery may run it at the same time",
                    preview(event, 500),
                )

    def _report(
        self, event: Event, handler: t.Callable[..., t.Any], error: BaseException
    ) -> HandlerFailure:
        """Log a call that raised on ``event`` and send it on ``handler_failed``."""
        # preview(): repr escapes newlines from the input, and a 10 MB message is cut.
        logger.error(
            "Handler %s raised on %s", handler_name(handler), preview(event, 500), exc_info=error
        )
        self.notify(signals.handler_failed, event=event, handler=handler, error=error)
        return HandlerFailure(event=event, handler=handler, error=error)

    def _run(self, event: Event, loaded: Loaded = None) -> tuple[HandlerFailure, ...]:
        failures: list[HandlerFailure] = []

        def failed(handler: t.Callable[..., t.Any], error: BaseException) -> None:
            failures.append(self._report(event, handler, error))

        cls = type(event)
        prepare = None
        if self._registry.has_payloads and isinstance(event, MessageEvent):
            prepare = self._payload_preparer(event, loaded)
        deliver(
            self._registry.routes_for(cls),
            event,
            (event,),
            _signals_for(cls),
            self._sender,
            {"event": event},
            failed,
            prepare,
            self._observer_for(event),
        )
        return tuple(failures)

    # -- payloads --------------------------------------------------------------------------

    def _payload_routes(self, event: MessageEvent) -> dict[int, tuple[t.Any, list[Route[t.Any]]]]:
        """The payload schemas of the handlers ``event`` reaches, each with its routes."""
        found: dict[int, tuple[t.Any, list[Route[t.Any]]]] = {}
        for route in self._registry.routes_for(type(event)):
            if route.payload is not None and (not route.filters or route.matches(event)):
                found.setdefault(id(route.payload), (route.payload, []))[1].append(route)
        return found

    def _load_payloads(
        self,
        envelopes: t.Sequence[Envelope],
        events: t.Sequence[Event],
        rejected: t.Sequence[Rejection],
    ) -> tuple[dict[int, dict[int, MessageEvent | None]], tuple[Rejection, ...]]:
        """Load each payload schema on each message it applies to, once; returns what each
        loaded (by event, then schema; ``None`` for a refusal) and the refusals, which are
        logged and sent on ``payload_rejected``."""
        loaded: dict[int, dict[int, MessageEvent | None]] = {}
        refused: list[tuple[int, list[Route[t.Any]], dict[str, t.Any]]] = []
        for number, event in enumerate(events):
            if not isinstance(event, MessageEvent):
                continue
            results: dict[int, MessageEvent | None] = {}
            for key, (schema, routes) in self._payload_routes(event).items():
                try:
                    results[key], messages = load_payload(schema, event)
                except Exception:
                    continue  # a schema's own bug: it fails the handler's call, later
                if messages is not None:
                    refused.append((number, routes, messages))
            loaded[id(event)] = results
        if not refused:
            return loaded, ()
        places = _places(envelopes, rejected)
        rejections = []
        for number, routes, messages in refused:
            event = events[number]
            envelope, index = places[number]
            rejection = Rejection(
                envelope=envelope,
                index=index,
                errors=messages,
                raw=event.raw,
                handlers=tuple(handler_name(route.handler) for route in routes),
            )
            logger.info(
                "The payload of %s was refused for %s: %s",
                preview(event, 500),
                ", ".join(rejection.handlers),
                preview(messages, 500),
            )
            self.notify(signals.payload_rejected, event=event, rejection=rejection)
            rejections.append(rejection)
        return loaded, tuple(rejections)

    def _payload_preparer(self, event: MessageEvent, loaded: Loaded) -> Prepare:
        """What gives each payload handler of ``event`` its copy of the event: what the
        request loaded, or (on a worker, or from :meth:`emit`) a load made on first use."""
        results = dict(loaded.get(id(event), {})) if loaded else {}

        def prepare(route: Route[t.Any]) -> tuple[MessageEvent] | None:
            key = id(route.payload)
            if key not in results:
                results[key], messages = load_payload(route.payload, event)
                if messages is not None:
                    # Already in the answer when the request loaded it; logged here in case
                    # the schema refuses now what it took then.
                    logger.info(
                        "Skipped %s: its payload schema refused %s: %s",
                        handler_name(route.handler),
                        preview(event, 500),
                        preview(messages, 500),
                    )
            found = results[key]
            return None if found is None else (found,)

        return prepare

    def listened(self, signal: Signal) -> bool:
        """Whether anyone listens to ``signal`` from this receiver (and its copies), so that an
        adapter builds what a signal carries only for a listener."""
        return listened(signal, self._sender)

    def notify(self, signal: Signal, **kwargs: t.Any) -> None:
        """Send a bookkeeping signal as this receiver; a subscriber that raises is logged and
        ignored. The receiver sends its own; an adapter sends the request signals with it."""
        notify(self._sender, signal, **kwargs)


_SIGNAL_CACHE: dict[type[Event], tuple[Signal, ...]] = {}


class _Unbatched:
    """What :meth:`_BatchClaims.take` answers for an event it holds no claim for."""


_UNBATCHED: t.Final = _Unbatched()


class _BatchClaims:
    """The de-duplication claims of one request's events, taken together and settled together.

    The keys are claimed in one call to the store when the first event of the request runs, and
    settled in one call once every claimed event has run: two round trips to a shared store per
    request, not two per event. Each event keeps its own outcome: a failed one releases only its
    own claim, a duplicate is skipped alone. An item repeated within the request is what it was
    with a claim per event: a duplicate once a copy succeeded, run again after a copy failed.
    A thread pool runs the events of one request on several threads, hence the lock; an event
    the pool runs again (a retry) claims on its own, as :meth:`Receiver.emit` does.

    With a ``unit`` (the request's events run on its thread), nothing is settled before it has
    done its deferred work, which may fail events that ran well: those are released instead.
    """

    __slots__ = (
        "_claims",
        "_copies",
        "_ended",
        "_first",
        "_held",
        "_left",
        "_lock",
        "_outcomes",
        "_receiver",
        "events",
    )

    def __init__(self, receiver: Receiver, events: t.Sequence[Event], unit: Unit | None) -> None:
        self._receiver = receiver
        self.events = events
        self._lock = threading.Lock()
        self._held = unit is not None
        if unit is not None:
            unit.on_close(self.release)
        self._claims: dict[int, Claim | None] | None = None  # first copies, by id(event)
        self._copies: dict[int, str] = {}  # later copies of a key, by id(event)
        self._first: dict[str, Claim] = {}  # the claim of each key's first copy
        self._ended: dict[str, bool] = {}  # how the last copy of a claimed key that ran ended
        self._outcomes: dict[str, tuple[Claim, Event, bool]] = {}
        self._left = 0  # runs still to come under a claim this request holds

    def take(self, event: Event) -> Claim | _Unbatched | None:
        """The claim ``event`` runs under (``None``: not de-duplicated); the first call claims
        every key of the request. Raises what :meth:`Receiver.emit` raises for a claim."""
        with self._lock:
            if self._claims is None:
                self._claims = {}  # a store failure below leaves each event to claim alone
                self._claim_all()
            number = id(event)
            if number in self._claims:
                claim = self._claims.pop(number)
            elif number in self._copies:
                claim = self._copy(self._copies.pop(number))
            else:
                return _UNBATCHED
            due = self._due()
        if due:
            self._receiver._settle_all(due)  # this was a skipped copy, and the last to come
        return None if claim is None else self._receiver._checked(claim, event)

    def finish(self, claim: Claim | None, event: Event, *, ok: bool) -> None:
        """Record how ``event`` ended; the last run under the request's claims settles them."""
        if claim is None or claim.state is not ClaimState.CLAIMED:
            return
        with self._lock:
            self._outcomes[claim.key] = (claim, event, ok)
            self._ended[claim.key] = ok
            self._left -= 1
            due = self._due()
        if due:
            self._receiver._settle_all(due)

    def release(self, failed: t.AbstractSet[int]) -> None:
        """The unit has done its deferred work, which failed the events in ``failed`` (by
        ``id``): settle once every run has ended (now, or when the last one does)."""
        with self._lock:
            self._held = False
            for key, (claim, event, ok) in list(self._outcomes.items()):
                if ok and id(event) in failed:
                    self._outcomes[key] = (claim, event, False)
                    self._ended[key] = False
            due = self._due()
        if due:
            self._receiver._settle_all(due)

    def _due(self) -> list[tuple[Claim, Event, bool]]:
        """The outcomes to settle now (under the lock): all of them once no run is to come and
        the unit's deferred work is done."""
        if self._held or self._left or not self._outcomes:
            return []
        outcomes = list(self._outcomes.values())
        self._outcomes.clear()
        return outcomes

    def abandon(self) -> None:
        """The dispatcher raised: settle what ran, and release the claims of what did not."""
        with self._lock:
            outcomes = list(self._outcomes.values())
            untaken = [] if self._claims is None else list(self._claims.items())
            self._outcomes.clear()
            self._claims, self._copies, self._left = {}, {}, 0
        by_id = {id(event): event for event in self.events}
        for number, claim in untaken:
            if claim is not None and claim.state is ClaimState.CLAIMED:
                outcomes.append((claim, by_id[number], False))
        if outcomes:
            self._receiver._settle_all(outcomes)

    def _copy(self, key: str) -> Claim:
        """The claim a later copy of ``key`` runs under (under the lock)."""
        first = self._first[key]
        if first.state is not ClaimState.CLAIMED:
            return first  # done or busy before this request: every copy is
        self._left -= 1  # this copy's own run is counted again below if it runs
        ended = self._ended.get(key)
        if ended is None:
            return Claim(key, ClaimState.BUSY, expires_in=0.0)  # a copy is running right now
        if ended:
            return Claim(key, ClaimState.DONE)
        del self._ended[key], self._outcomes[key]
        self._left += 1
        return first  # the last copy failed: this one runs, under the same claim

    def _claim_all(self) -> None:
        receiver = self._receiver
        assert receiver._batches is not None
        firsts: dict[str, int] = {}  # key -> id of the first event that has it
        claims: dict[int, Claim | None] = {}
        copies: dict[int, str] = {}
        for event in self.events:
            key = receiver.dedupe_key(event)
            if key is None:
                claims[id(event)] = None
            elif key in firsts:
                copies[id(event)] = key
            else:
                firsts[key] = id(event)
        try:
            found = receiver._batches.claim_many(list(firsts))
        except Exception as error:
            raise receiver._store_failed(error, f"{len(firsts)} event(s)") from error
        if receiver._leases is not None:
            receiver._leases.hold(found)
        for claim, number in zip(found, firsts.values(), strict=True):
            claims[number] = claim
            self._first[claim.key] = claim
        self._claims, self._copies = claims, copies
        claimed = {key for key, claim in self._first.items() if claim.state is ClaimState.CLAIMED}
        self._left = len(claimed) + sum(1 for key in copies.values() if key in claimed)


class _Observer:
    """Sends each call of an event's handlers on ``handler_started`` and ``handler_finished``,
    those of the two that someone listens to."""

    __slots__ = ("event", "receiver", "send_finished", "send_started")

    def __init__(self, receiver: Receiver, event: Event, *, started: bool, finished: bool) -> None:
        self.receiver = receiver
        self.event = event
        self.send_started = started
        self.send_finished = finished

    def started(self, handler: t.Callable[..., t.Any]) -> None:
        if self.send_started:
            self.receiver.notify(signals.handler_started, event=self.event, handler=handler)

    def finished(
        self, handler: t.Callable[..., t.Any], seconds: float, error: BaseException | None
    ) -> None:
        if not self.send_finished:
            return
        self.receiver.notify(
            signals.handler_finished,
            event=self.event,
            handler=handler,
            seconds=seconds,
            error=error,
        )


def _places(
    envelopes: t.Sequence[Envelope], rejected: t.Sequence[Rejection]
) -> list[tuple[int, int]]:
    """``(envelope, index)`` of each event, in the order of the events: every item of the body
    in order, but those rejected."""
    skipped = {(r.envelope, r.index) for r in rejected}
    return [
        (position, index)
        for position, envelope in enumerate(envelopes)
        for index in range(len(envelope.items))
        if (position, index) not in skipped
    ]


def _signals_for(event_class: type[Event]) -> tuple[Signal, ...]:
    try:
        return _SIGNAL_CACHE[event_class]
    except KeyError:
        found = next((_EVENT_SIGNALS[c] for c in event_class.__mro__ if c in _EVENT_SIGNALS), ())
        _SIGNAL_CACHE[event_class] = found
        return found
