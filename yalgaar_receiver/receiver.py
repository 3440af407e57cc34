"""``Receiver``: configuration, authentication, the handler registry and dispatch; no Flask.

The flow is one way: a body comes in through :meth:`Receiver.handle`, is read by
:mod:`~yalgaar_receiver.parsing`, checked against the configured client keys, and its events go to
the dispatcher, which runs each one through :meth:`Receiver.emit`. What comes back is an
:class:`~yalgaar_receiver.Outcome` or one of the refusals in :mod:`~yalgaar_receiver.exceptions`;
turning those into HTTP answers is the blueprint's job.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import logging
import operator
import threading
import typing as t

from blinker import Signal

from . import signals
from .dedupe import BUSY_RETRY_AFTER, STORE_RETRY_AFTER, Claim, ClaimState, DedupeStore, KeyFunction
from .dedupe import event_key as default_event_key
from .dispatch import Dispatcher, InlineDispatcher
from .events import (
    Batch,
    BindEvent,
    Event,
    HandlerFailure,
    MessageEvent,
    Outcome,
    PresenceEvent,
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
from .fastpath import record_builder
from .parsing import Envelope, load_envelopes, read_envelopes
from .routing import Decorator, Registry
from .wire import preview

__all__ = ["Receiver"]

logger = logging.getLogger("yalgaar_receiver")


#: ``Outcome(accepted=..., rejected=..., failed=..., duplicates=...)``, built by its slots as the
#: events are (see :func:`~yalgaar_receiver.fastpath.record_builder`): every request builds one.
_new_outcome: t.Final = record_builder(Outcome, ("accepted", "rejected", "failed", "duplicates"))

_items_of: t.Final = operator.attrgetter("items")

#: The refusals of a whole request; each is sent on ``envelope_rejected``.
REFUSALS: t.Final = (InvalidEnvelopeError, AuthenticationError, PayloadTooLargeError)

# Which signals carry which event, most specific first (the order the issue fixes: ``bind`` then
# ``presence``). Looked up along the MRO so that a subclass of an event class still has signals.
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
    :param max_body_bytes: the largest body accepted (413 above).
    :param max_items: the most items accepted in one request, over all envelopes (413 above).
    :param max_depth: the deepest JSON nesting accepted (400 above).
    :param fail_on_handler_error: answer 500 when a handler raised, so the sender tries again;
        with ``False`` the failure is only logged and signalled.
    :param dispatcher: when and where handlers run; :class:`InlineDispatcher` by default.
    :param dedupe: where de-duplication keys live (see :mod:`yalgaar_receiver.dedupe`); with
        one, an event already handled within the store's ttl is not run again. ``None`` (the
        default) runs every delivery.
    :param dedupe_key: the key of an event; :func:`~yalgaar_receiver.dedupe.event_key` by
        default. Return ``None`` to run an event without de-duplication.
    """

    def __init__(
        self,
        client_keys: t.Iterable[str] | None = None,
        *,
        allow_unauthenticated: bool = False,
        strict: bool = False,
        max_body_bytes: int = 1_048_576,
        max_items: int = 10_000,
        max_depth: int = 64,
        fail_on_handler_error: bool = True,
        dispatcher: Dispatcher | None = None,
        dedupe: DedupeStore | None = None,
        dedupe_key: KeyFunction = default_event_key,
    ) -> None:
        self.client_keys: tuple[str, ...] = normalize_keys(client_keys, "client_keys")
        self.allow_unauthenticated = allow_unauthenticated
        self.strict = strict
        self.max_body_bytes = _positive(max_body_bytes, "max_body_bytes")
        self.max_items = _positive(max_items, "max_items")
        self.max_depth = _positive(max_depth, "max_depth")
        self.fail_on_handler_error = fail_on_handler_error
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
        # A dispatcher that runs events in another process (a Celery worker) must find this
        # receiver there; it asks for it with an ``attach`` method.
        attach = getattr(self.dispatcher, "attach", None)
        if callable(attach):
            attach(self)
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
        self.on_message = Decorator(self._registry, MessageEvent)
        #: Handlers of :class:`UnknownEvent` (an envelope ``source`` this package does not know).
        self.on_unknown = Decorator(self._registry, UnknownEvent)
        #: Handlers of every event.
        self.on_event = Decorator(self._registry, Event)

    def __repr__(self) -> str:
        # Never the keys themselves: a repr ends up in logs.
        return f"<Receiver keys={len(self.client_keys)} handlers={len(self._registry)}>"

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
        :param client_keys: keys to accept when the receiver was built without any (the
            blueprint passes the app's ``YALGAAR_CLIENT_KEYS``); ignored otherwise.
        :raises PayloadTooLargeError: too many bytes or items.
        :raises InvalidEnvelopeError: not JSON, too deep, no envelope, or (strict) a bad item.
        :raises AuthenticationError: an envelope's ``clientKey`` is missing or not configured.
        :raises ConfigurationError: no key is configured and ``allow_unauthenticated`` is off.
        :raises DispatchUnavailableError: the events cannot be taken now; send again later.
        """
        keys = self.client_keys or tuple(client_keys or ())
        if not keys and not self.allow_unauthenticated:
            raise ConfigurationError(
                "The receiver has no client key to check webhooks against. Pass "
                "Receiver(client_keys=[...]) or set YALGAAR_CLIENT_KEYS; for local testing "
                "only, pass allow_unauthenticated=True."
            )
        try:
            batch = self._read(body, source_hint, keys)
        except REFUSALS as error:
            self.refused(error)
            raise
        # The bookkeeping signals are looked at before a call: most apps subscribe to none.
        if signals.envelope_received.receivers:
            self._notify(signals.envelope_received, batch=batch)
        if batch.rejected and signals.event_rejected.receivers:
            for rejection in batch.rejected:
                self._notify(signals.event_rejected, rejection=rejection)
        if self.dedupe is None:
            # What emit() comes down to without a store, a call shorter per event.
            failures = self.dispatcher.dispatch(batch.events, self._run)
            return _new_outcome(batch.events, batch.rejected, tuple(failures), ())
        # Duplicates found while the dispatcher runs (all of them, inline) go into the outcome;
        # a background dispatcher finds them later, and only the signal sees those.
        duplicates: list[Event] = []

        def emit(event: Event) -> tuple[HandlerFailure, ...]:
            return self._emit(event, duplicates)

        failures = self.dispatcher.dispatch(batch.events, emit)
        return _new_outcome(batch.events, batch.rejected, tuple(failures), tuple(duplicates))

    def _read(self, body: object, source_hint: str | None, keys: tuple[str, ...]) -> Batch:
        size = len(body) if type(body) is bytes else _byte_size(body)
        if size is not None and size > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"The body has {size} bytes, more than max_body_bytes={self.max_body_bytes}.",
                limit=self.max_body_bytes,
                actual=size,
            )
        envelopes = read_envelopes(body, source_hint=source_hint, max_depth=self.max_depth)
        count = sum(map(len, map(_items_of, envelopes)))
        if count > self.max_items:
            raise PayloadTooLargeError(
                f"The request has {count} items, more than max_items={self.max_items}.",
                limit=self.max_items,
                actual=count,
            )
        if keys:
            self._authenticate(envelopes, keys)
        batch = load_envelopes(envelopes)
        if self.strict and batch.rejected:
            raise InvalidEnvelopeError(
                f"{len(batch.rejected)} item(s) are malformed and the receiver is strict; "
                "see 'rejected' for each one.",
                messages={"data": ["Malformed items; see 'rejected'."]},
                rejected=batch.rejected,
            )
        return batch

    def _authenticate(self, envelopes: t.Sequence[Envelope], keys: tuple[str, ...]) -> None:
        expected = _encoded(keys)
        for position, envelope in enumerate(envelopes):
            key = envelope.client_key
            if key is None:
                raise AuthenticationError(f"Envelope {position} has no clientKey string.")
            given = key.encode("utf-8", "surrogatepass")
            matched = False
            # Compare against every key, without stopping early, so that timing does not tell
            # which configured key was close.
            for candidate in expected:
                matched |= hmac.compare_digest(given, candidate)
            if not matched:
                raise AuthenticationError(
                    f"The clientKey of envelope {position} matches no configured key."
                )

    def refused(self, error: YalgaarError) -> None:
        """Log a refused request and send ``envelope_rejected``.

        :meth:`handle` calls this for its own refusals; an adapter that refuses a request
        before calling :meth:`handle` (a ``Content-Length`` over the limit) calls it too, so
        that every refusal is seen the same way.
        """
        level = logging.WARNING if isinstance(error, AuthenticationError) else logging.INFO
        logger.log(level, "Refused a webhook request: %s", error)
        self._notify(signals.envelope_rejected, error=error)

    # -- dispatching -----------------------------------------------------------------------

    def handlers_for(self, event: Event) -> list[t.Callable[..., t.Any]]:
        """The decorated handlers ``event`` would reach, in the order they would be called."""
        return [r.handler for r in self._registry.routes_for(type(event)) if r.matches(event)]

    def emit(self, event: Event) -> tuple[HandlerFailure, ...]:
        """Run one event through its handlers, then its signals; return the calls that raised.

        Every handler and subscriber is called even when an earlier one raised: blinker stops
        at the first exception, so this walks the receivers itself and isolates each call.
        Dispatchers call this; so do tests and replays that already hold an event.

        With ``dedupe``, the event's key is claimed first. A duplicate (a key marked done) is not
        run but sent on ``duplicate_event``. The key is marked done only when every call
        succeeded; any failure releases it, so that a resend runs the event again.

        :raises DispatchUnavailableError: with ``dedupe`` only: the store failed, or another
            delivery of the same event is running right now. Nothing was run; try again later.
        """
        return self._emit(event, None)

    def _emit(self, event: Event, duplicates: list[Event] | None) -> tuple[HandlerFailure, ...]:
        if self.dedupe is None:
            return self._run(event)
        claim = self._claim(event)
        if claim is not None and claim.state is ClaimState.DONE:
            logger.debug("Skipped a duplicate of %r", event)
            if duplicates is not None:
                duplicates.append(event)
            self._notify(signals.duplicate_event, event=event)
            return ()
        try:
            failures = self._run(event)
        except BaseException:
            # Only what _run does not isolate (KeyboardInterrupt, SystemExit) gets here.
            if claim is not None:
                self._settle(claim, event, ok=False)
            raise
        if claim is not None:
            self._settle(claim, event, ok=not failures)
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
            # Neither running the event (it may be a duplicate) nor skipping it (it may not be)
            # is safe; refusing makes the sender keep it and try again.
            logger.warning("The dedupe store failed; refusing %r for now", event, exc_info=True)
            raise DispatchUnavailableError(
                f"The de-duplication store failed ({type(error).__name__}); send again later.",
                retry_after=STORE_RETRY_AFTER,
            ) from error
        if claim.state is ClaimState.BUSY:
            logger.info("%r is being handled by another delivery; refusing it for now", event)
            raise DispatchUnavailableError(
                "Another delivery of this event is being handled right now; send again later.",
                retry_after=BUSY_RETRY_AFTER,
            )
        return claim

    def _settle(self, claim: Claim, event: Event, *, ok: bool) -> None:
        """Mark a claim done or release it; a store failure here only costs a later duplicate."""
        assert self.dedupe is not None
        try:
            if ok:
                if not self.dedupe.done(claim):
                    logger.warning(
                        "The claim on %r expired before its handlers finished; raise the "
                        "store's lease, or another delivery may run it at the same time",
                        event,
                    )
            else:
                self.dedupe.release(claim)
        except Exception:
            # The claim then expires after the lease: a resend runs the event again, which is
            # at-least-once, never a loss.
            logger.warning(
                "The dedupe store failed to %s the claim on %r",
                "mark done" if ok else "release",
                event,
                exc_info=True,
            )

    def _run(self, event: Event) -> tuple[HandlerFailure, ...]:
        failures: list[HandlerFailure] = []
        for route in self._registry.routes_for(type(event)):
            try:
                if not route.filters or route.matches(event):
                    # _call() written out: a handler per signal is the common case.
                    result = route.handler(event)
                    if result is not None and inspect.isawaitable(result):
                        _wait(result)
            except Exception as error:
                failures.append(self._failed(event, route.handler, error))
        # The cache read here first: a call per event is a share of a 200-item batch.
        for signal in _SIGNAL_CACHE.get(type(event)) or _signals_for(type(event)):
            if not signal.receivers:
                continue
            for subscriber in signal.receivers_for(self):
                try:
                    _call(subscriber, self, event=event)
                except Exception as error:
                    failures.append(self._failed(event, subscriber, error))
        return tuple(failures)

    def _failed(
        self, event: Event, handler: t.Callable[..., t.Any], error: Exception
    ) -> HandlerFailure:
        # preview(): repr escapes newlines from the input, and a 10 MB message is cut.
        logger.error("Handler %s raised on %s", _name(handler), preview(event, 500), exc_info=error)
        failure = HandlerFailure(event=event, handler=handler, error=error)
        self._notify(signals.handler_failed, event=event, handler=handler, error=error)
        return failure

    def _notify(self, signal: Signal, **kwargs: t.Any) -> None:
        """Send a bookkeeping signal; a subscriber that raises is logged and ignored."""
        if not signal.receivers:
            return
        for subscriber in signal.receivers_for(self):
            try:
                _call(subscriber, self, **kwargs)
            except Exception:
                logger.exception(
                    "Subscriber %s of %r raised; ignored",
                    _name(subscriber),
                    getattr(signal, "name", signal),
                )


def normalize_keys(
    keys: t.Iterable[str] | str | None, setting: str, *, item: str = "key"
) -> tuple[str, ...]:
    """Validate a configured list of secrets or names: non-empty strings, trimmed.

    Used for the client keys and for the ``YALGAAR_*`` lists of the authentication layers. A
    setting may also be one comma-separated string (as an environment variable is); a set but
    empty one means none. A plain string passed as ``Receiver(client_keys=...)`` is refused,
    because iterating it would configure one key per character.

    :param setting: the setting's name, for the error messages.
    :param item: what one entry is called in the error messages.
    """
    if keys is None:
        return ()
    if isinstance(keys, str):
        if setting == "client_keys":
            raise ConfigurationError(
                "client_keys must be a list of keys, not one string; "
                f"write client_keys=[{'...'!r}]."
            )
        if not keys.strip():
            return ()
        keys = keys.split(",")
    elif not isinstance(keys, t.Iterable):
        # Flask's from_prefixed_env() turns FLASK_YALGAAR_URL_TOKENS=123 into the number 123.
        raise ConfigurationError(
            f"{setting} must be a list of strings or one comma-separated string, "
            f"not a {type(keys).__name__}."
        )
    result = []
    for key in keys:
        if not isinstance(key, str):
            raise ConfigurationError(f"{setting} must hold strings; got a {type(key).__name__}.")
        key = key.strip()
        if not key:
            # Yalgaar's own doc shows "clientKey": "", so an empty key would accept anything.
            raise ConfigurationError(f"{setting} holds an empty {item}; remove it.")
        result.append(key)
    return tuple(result)


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {value!r}.")
    return value


def _byte_size(body: object) -> int | None:
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, memoryview):
        return body.nbytes
    if isinstance(body, str):
        return len(body.encode("utf-8", "surrogatepass"))
    return None


@functools.lru_cache(maxsize=64)
def _encoded(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    """The configured keys as bytes for ``compare_digest``; the same few tuples every request."""
    return tuple(k.encode("utf-8") for k in keys)


_SIGNAL_CACHE: dict[type[Event], tuple[Signal, ...]] = {}


def _signals_for(event_class: type[Event]) -> tuple[Signal, ...]:
    try:
        return _SIGNAL_CACHE[event_class]
    except KeyError:
        found = next((_EVENT_SIGNALS[c] for c in event_class.__mro__ if c in _EVENT_SIGNALS), ())
        _SIGNAL_CACHE[event_class] = found
        return found


def _call(func: t.Callable[..., t.Any], /, *args: t.Any, **kwargs: t.Any) -> None:
    """Call a handler; run it to completion when it is ``async def``."""
    result = func(*args, **kwargs)
    # Most handlers return None; asking inspect about it costs more than the call.
    if result is not None and inspect.isawaitable(result):
        _wait(result)


def _wait(awaitable: t.Awaitable[t.Any]) -> None:
    async def wait() -> None:
        await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(wait())
        return
    # Called from inside a running event loop (an async test, an ASGI server): that loop cannot
    # be blocked on, so the coroutine gets a loop of its own on a helper thread, as Flask's
    # ensure_sync does.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(wait())
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    thread = threading.Thread(target=target, name="yalgaar-async-handler")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _name(func: t.Callable[..., t.Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)
