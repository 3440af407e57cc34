"""Handlers: the filters, the ordered registry behind the ``on_*`` decorators, and the one loop
that calls each handler and subscriber.

Blinker keeps receivers in a dict keyed by id and cannot promise an order, nor hold a handler
without the caller keeping it alive; the registry does both. Blinker also stops at the first
receiver that raises (pallets-eco/blinker issue 10, wontfix), so :func:`deliver` walks the
receivers itself and isolates each call. The receiver and the presence tracker both use it, so
every decorator in the package filters, orders and isolates the same way.

Imports: the standard library and blinker.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
import re
import threading
import time
import typing as t
from dataclasses import dataclass

from blinker import Signal

__all__ = [
    "ISOLATED",
    "Decorator",
    "Filter",
    "Matcher",
    "Registry",
    "Route",
    "compile_filter",
    "compile_filters",
    "deliver",
    "handler_name",
    "listened",
    "notify",
    "observed",
]

logger = logging.getLogger("yalgaar_receiver")

#: What a keyword filter of a decorator may be: a glob (``fnmatchcase`` rules, case-sensitive;
#: a string without ``*``, ``?`` or ``[`` is compared exactly), a compiled regex (``search``),
#: or a predicate that takes the value.
Filter = t.Union[str, "re.Pattern[str]", t.Callable[[str], bool]]
Matcher = t.Callable[[t.Any], bool]

_GLOB_CHARS: t.Final = frozenset("*?[")

H = t.TypeVar("H", bound=t.Callable[..., t.Any])
K = t.TypeVar("K")


def compile_filter(name: str, spec: Filter) -> Matcher:
    """Turn one filter into a function of the field's value; a ``None`` value never matches.

    :param name: the field's name, for the error message.
    :raises TypeError: ``spec`` is none of the accepted kinds.
    """
    if isinstance(spec, str):
        if _GLOB_CHARS.isdisjoint(spec):
            return lambda value: value == spec
        match = re.compile(fnmatch.translate(spec)).match
        return lambda value: value is not None and match(value) is not None
    if isinstance(spec, re.Pattern):
        search = spec.search
        return lambda value: value is not None and search(value) is not None
    if callable(spec):
        return lambda value: value is not None and bool(spec(value))
    raise TypeError(
        f"The {name} filter must be a string, a compiled regex or a callable, got {spec!r}."
    )


def compile_filters(filters: t.Mapping[str, Filter | None]) -> tuple[tuple[str, Matcher], ...]:
    """Compile the filters that are not ``None``, keyed by the field they test.

    Called when a decorator is applied with its arguments, so that a bad filter fails at import
    time rather than when the first event arrives.
    """
    return tuple(
        (field, compile_filter(field, spec)) for field, spec in filters.items() if spec is not None
    )


@dataclass(frozen=True, slots=True)
class Route(t.Generic[K]):
    """One registered handler: what it listens to, and the filters it asked for."""

    handler: t.Callable[..., t.Any]
    key: K
    filters: tuple[tuple[str, Matcher], ...]
    #: What the handler's arguments are made with, for a handler that asked for more than the
    #: subject (a message payload schema); ``None`` for the common handler. See :func:`deliver`.
    payload: t.Any = None

    def matches(self, subject: object) -> bool:
        """Whether every filter accepts the same-named attribute of ``subject``."""
        return all(match(getattr(subject, field)) for field, match in self.filters)


class Registry(t.Generic[K]):
    """Handlers in registration order, looked up by a key such as an event class."""

    def __init__(self, accepts: t.Callable[[K, t.Any], bool]) -> None:
        """:param accepts: whether a route registered under a key receives a lookup value."""
        self._routes: list[Route[K]] = []
        self._accepts = accepts
        self._cache: dict[t.Any, tuple[Route[K], ...]] = {}
        #: Whether any route has a ``payload``: without one, nothing needs preparing.
        self.has_payloads = False

    def add(
        self,
        key: K,
        handler: H,
        filters: tuple[tuple[str, Matcher], ...] = (),
        payload: t.Any = None,
    ) -> H:
        """Register ``handler`` under ``key`` with filters from :func:`compile_filters`."""
        if not callable(handler):
            raise TypeError(f"A handler must be callable, got {handler!r}.")
        self._routes.append(Route(handler=handler, key=key, filters=filters, payload=payload))
        self._cache.clear()
        self.has_payloads = self.has_payloads or payload is not None
        return handler

    def routes_for(self, lookup: t.Any) -> tuple[Route[K], ...]:
        """The routes whose key accepts ``lookup``, in registration order (cached)."""
        try:
            return self._cache[lookup]
        except KeyError:
            routes = tuple(r for r in self._routes if self._accepts(r.key, lookup))
            self._cache[lookup] = routes
            return routes

    def __len__(self) -> int:
        return len(self._routes)


class Decorator(t.Generic[K]):
    """The object behind ``receiver.on_bind``, ``tracker.on_member_left`` and their siblings.

    Use it bare (``@receiver.on_bind``) or with keyword filters
    (``@receiver.on_message(channel="orders-*")``); either way the function is returned unchanged
    and held with a strong reference, so a handler defined inside an app factory stays
    registered. The filters are compiled when the decorator is applied, so a bad one fails at
    import time.
    """

    def __init__(self, registry: Registry[K], key: K) -> None:
        self._registry = registry
        #: What the handlers registered here listen to (an event class, a transition kind).
        self.key = key

    @t.overload
    def __call__(self, func: H, /) -> H: ...

    @t.overload
    def __call__(
        self, *, channel: Filter | None = None, uuid: Filter | None = None
    ) -> t.Callable[[H], H]: ...

    def __call__(
        self,
        func: t.Callable[..., t.Any] | None = None,
        *,
        channel: Filter | None = None,
        uuid: Filter | None = None,
    ) -> t.Any:
        """Register a handler.

        :param channel: only calls whose channel matches (see :data:`Filter`).
        :param uuid: only calls whose uuid matches; a missing uuid never matches.
        """
        filters = compile_filters({"channel": channel, "uuid": uuid})
        if func is not None:
            return self._registry.add(self.key, func, filters)

        def decorator(handler: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
            return self._registry.add(self.key, handler, filters)

        return decorator


#: What a handler may raise without stopping the others: any error, and the cancellation of an
#: ``async def`` handler (``asyncio.CancelledError`` is not an ``Exception``). KeyboardInterrupt
#: and SystemExit still stop the process, as they should.
ISOLATED: t.Final = (Exception, asyncio.CancelledError)

#: Told of each isolated call that raised: the handler or subscriber, and what it raised.
OnFailure = t.Callable[[t.Callable[..., t.Any], BaseException], object]
#: Makes the arguments of a route that has a ``payload``; ``None`` skips that route.
Prepare = t.Callable[[Route[t.Any]], "tuple[t.Any, ...] | None"]


class Observer(t.Protocol):
    """Told of every call :func:`deliver` makes: for timing and tracing."""

    def started(self, handler: t.Callable[..., t.Any]) -> None: ...

    def finished(
        self, handler: t.Callable[..., t.Any], seconds: float, error: BaseException | None
    ) -> None: ...


def deliver(
    routes: t.Iterable[Route[t.Any]],
    subject: object,
    args: tuple[t.Any, ...],
    signals: t.Iterable[Signal],
    sender: object,
    kwargs: t.Mapping[str, t.Any],
    failed: OnFailure,
    prepare: Prepare | None = None,
    observer: Observer | None = None,
) -> None:
    """Call each route whose filters accept ``subject`` with ``args``, then each subscriber of
    each of ``signals`` for ``sender`` with ``(sender, **kwargs)``; isolate every call. An
    ``async def`` handler or subscriber is run to completion.

    :param failed: called at once with each call that raised, before the next call runs (so
        that what it reports comes in the order things happened); the others all run.
    :param prepare: makes the arguments of each route that has a ``payload``: ``None`` skips
        the route (``prepare`` reports why), and an error it raises fails that route's call.
        Without ``prepare`` such routes are skipped.
    :param observer: told before and after each call (not of a skipped route).
    """
    for route in routes:
        if route.filters and not route.matches(subject):
            continue
        call_args = args
        if route.payload is not None:
            try:
                # What fails while preparing fails this handler's call.
                prepared = None if prepare is None else prepare(route)
            except ISOLATED as error:
                failed(route.handler, error)
                continue
            if prepared is None:
                continue
            call_args = prepared
        if observer is None:
            try:
                result = route.handler(*call_args)
                # Most handlers return None; asking inspect about it costs more than the call.
                if result is not None and inspect.isawaitable(result):
                    _wait(result)
            except ISOLATED as error:
                failed(route.handler, error)
        else:
            observed(route.handler, call_args, {}, failed, observer)
    for signal in signals:
        # Most signals have no subscriber; asking blinker for them costs more than this check.
        if not signal.receivers:
            continue
        for subscriber in signal.receivers_for(sender):
            if observer is not None:
                observed(subscriber, (sender,), kwargs, failed, observer)
                continue
            try:
                result = subscriber(sender, **kwargs)
                if result is not None and inspect.isawaitable(result):
                    _wait(result)
            except ISOLATED as error:
                failed(subscriber, error)


def listened(signal: Signal, sender: object) -> bool:
    """Whether anyone listens to ``signal`` from ``sender``: a check that costs one attribute
    look-up while nobody listens to the signal at all, so that what a signal would carry is
    built only for a listener.

    ``has_receivers_for`` alone is not the answer: blinker keeps a sender's (empty) entry after
    its last subscriber disconnects, so it stays true for that sender while the signal has
    subscribers elsewhere; the receivers themselves are looked at when it says yes."""
    return (
        bool(signal.receivers)
        and signal.has_receivers_for(sender)
        and next(iter(signal.receivers_for(sender)), None) is not None
    )


def notify(sender: object, signal: Signal, **kwargs: t.Any) -> None:
    """Send a bookkeeping signal as ``sender``: each subscriber is called and isolated, and one
    that raises is logged and ignored."""
    if not signal.receivers:
        return  # the common case, and cheaper to tell here than after building the call

    def ignored(subscriber: t.Callable[..., t.Any], error: BaseException) -> None:
        logger.error(
            "Subscriber %s of %r raised; ignored",
            handler_name(subscriber),
            getattr(signal, "name", signal),
            exc_info=error,
        )

    deliver((), None, (), (signal,), sender, kwargs, ignored)


def observed(
    function: t.Callable[..., t.Any],
    args: tuple[t.Any, ...],
    kwargs: t.Mapping[str, t.Any],
    failed: OnFailure,
    observer: Observer,
) -> None:
    """One isolated call, with ``observer`` told before and after it: how :func:`deliver` calls
    each handler when it has an observer, and how a unit of work calls its deferred work."""
    observer.started(function)
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        result = function(*args, **kwargs)
        if result is not None and inspect.isawaitable(result):
            _wait(result)
    except ISOLATED as raised:
        error = raised
    seconds = time.perf_counter() - started
    if error is not None:
        # Reported before the observer hears the end, so that its log line falls inside the
        # call's span.
        failed(function, error)
    observer.finished(function, seconds, error)


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


def handler_name(handler: t.Callable[..., t.Any]) -> str:
    """``module.qualname`` of a handler: how logs, dead letters and metrics name it."""
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__qualname__", None) or repr(handler)
    return f"{module}.{name}" if module else name
