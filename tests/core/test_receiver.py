"""Receiver without Flask: configuration, authentication, limits, dispatch order and isolation."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import typing as t

import pytest
from blinker import Signal

from yalgaar_receiver import (
    AuthenticationError,
    BindEvent,
    ConfigurationError,
    Event,
    InvalidEnvelopeError,
    MessageEvent,
    PayloadTooLargeError,
    PresenceEvent,
    Receiver,
    UnbindEvent,
    UnknownEvent,
    signals,
)
from yalgaar_receiver.testing import capture_events

from ..payloads import KEY, payload


def envelope(source: str, *items: dict[str, t.Any], key: t.Any = KEY) -> dict[str, t.Any]:
    return {"items": {"source": source, "clientKey": key, "data": list(items)}}


def bind(channel: str = "room", uuid: str = "u1", **extra: t.Any) -> dict[str, t.Any]:
    return {"channel": channel, "uuid": uuid, "timestamp": "1521609600", "action": "bind", **extra}


def unbind(channel: str = "room", uuid: str = "u1") -> dict[str, t.Any]:
    return {"channel": channel, "uuid": uuid, "timestamp": "1521609601", "action": "unbind"}


def message(channel: str = "room", text: str = "hi", uuid: str = "u1") -> dict[str, t.Any]:
    return {"channel": channel, "uuid": uuid, "timestamp": "1521609600", "message": text}


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(client_keys=[KEY])


# -- configuration ----------------------------------------------------------------------------


def test_handle_without_any_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="allow_unauthenticated=True"):
        Receiver().handle(payload("presence-bind.json"))


def test_allow_unauthenticated_accepts_any_key() -> None:
    outcome = Receiver(allow_unauthenticated=True).handle(payload("client-key-missing.json"))
    assert len(outcome.accepted) == 1


def test_configured_keys_are_checked_even_when_unauthenticated_is_allowed() -> None:
    receiver = Receiver(client_keys=[KEY], allow_unauthenticated=True)
    with pytest.raises(AuthenticationError):
        receiver.handle(payload("client-key-wrong.json"))


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"client_keys": KEY}, "not one string"),
        ({"client_keys": [""]}, "empty key"),
        ({"client_keys": ["  "]}, "empty key"),
        ({"client_keys": [3]}, "must hold strings"),
        ({"loader": "fast"}, "loader must be one of"),
        ({"max_items": -1}, "max_items"),
        ({"max_depth": True}, "max_depth"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, t.Any], text: str) -> None:
    with pytest.raises(ConfigurationError, match=text):
        Receiver(**kwargs)


def test_repr_never_shows_keys() -> None:
    assert KEY not in repr(Receiver(client_keys=[KEY]))


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "client-key-missing.json",
        "client-key-number.json",
        "client-key-wrong.json",
        "client-key-mixed.json",
    ],
)
def test_refused_keys(receiver: Receiver, name: str) -> None:
    seen: list[Event] = []
    receiver.on_event(seen.append)
    with pytest.raises(AuthenticationError) as info:
        receiver.handle(payload(name))
    assert KEY not in str(info.value) and "ck-ffff" not in str(info.value)
    assert seen == []  # nothing is dispatched from a refused request


def test_key_rotation_accepts_every_configured_key() -> None:
    receiver = Receiver(client_keys=["ck-old0000000000000", KEY])
    assert len(receiver.handle(payload("presence-bind.json")).accepted) == 1
    body = envelope("Presence", bind(), key="ck-old0000000000000")
    assert len(receiver.handle(body).accepted) == 1


@pytest.mark.parametrize("key", [12345, {"k": KEY}, [KEY], None, True, ""])
def test_keys_of_any_json_type_are_not_valid(receiver: Receiver, key: object) -> None:
    with pytest.raises(AuthenticationError):
        receiver.handle(envelope("Presence", bind(), key=key))


def test_empty_request_needs_no_key(receiver: Receiver) -> None:
    received: list[object] = []
    with signals.envelope_received.connected_to(
        lambda s, **kw: received.append(kw), sender=receiver
    ):
        outcome = receiver.handle(payload("items-empty.json"))
    assert (outcome.accepted, outcome.rejected, outcome.failed) == ((), (), ())
    assert len(received) == 1


def test_a_copy_with_other_keys_shares_the_handlers_and_the_signals() -> None:
    bare = Receiver()
    keyed = bare.with_client_keys([KEY])
    seen: list[Event] = []
    bare.on_bind(seen.append)  # decorated on the original, after the copy was made
    with capture_events(bare) as capture:
        assert len(keyed.handle(payload("presence-bind.json")).accepted) == 1
    # The copy's events reach the original's handlers and its subscribers (it sends as it).
    assert [e.uuid for e in seen] == [e.uuid for e in capture] == ["User-1a2b3c4d"]
    with pytest.raises(AuthenticationError):
        bare.with_client_keys(["ck-other000000000"]).handle(payload("presence-bind.json"))
    with pytest.raises(ConfigurationError, match="no client key"):
        bare.handle(payload("presence-bind.json"))
    assert bare.client_keys == () and keyed.client_keys == (KEY,)


def test_keys_passed_to_handle_still_work_with_a_warning() -> None:
    bare = Receiver()
    with pytest.warns(DeprecationWarning, match="with_client_keys"):
        outcome = bare.handle(payload("presence-bind.json"), client_keys=[KEY])
    assert len(outcome.accepted) == 1


@pytest.mark.parametrize(
    ("setting", "value"), [("max_body_bytes", 100), ("fail_on_handler_error", False)]
)
def test_http_settings_on_the_receiver_still_work_with_a_warning(
    setting: str, value: t.Any
) -> None:
    with pytest.warns(DeprecationWarning, match=f"create_blueprint\\(receiver, {setting}="):
        receiver = Receiver(client_keys=[KEY], **{setting: value})
    assert receiver.blueprint_defaults == {setting: value}


# -- limits and refusals ----------------------------------------------------------------------


def test_items_over_max_items_count_every_envelope() -> None:
    body = {
        "items": [
            envelope("Presence", bind(), bind())["items"],
            envelope("Presence", bind())["items"],
        ]
    }
    assert len(Receiver(client_keys=[KEY], max_items=3).handle(body).accepted) == 3
    with pytest.raises(PayloadTooLargeError, match="3 items"):
        Receiver(client_keys=[KEY], max_items=2).handle(body)


def test_items_are_counted_before_keys_and_keys_before_items_are_read() -> None:
    body = envelope("Presence", bind(), bind(), key="wrong")
    with pytest.raises(PayloadTooLargeError):
        Receiver(client_keys=[KEY], max_items=1).handle(body)
    with pytest.raises(InvalidEnvelopeError):
        Receiver(client_keys=[KEY]).handle(b'{"items": {"clientKey": "wrong", "data": 3}}')


def test_every_refusal_is_signalled_and_logged(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    with signals.envelope_rejected.connected_to(
        lambda s, error: errors.append(error), sender=receiver
    ):
        for body in (b"{", payload("client-key-wrong.json")):
            with pytest.raises((InvalidEnvelopeError, AuthenticationError)):
                receiver.handle(body)
        with pytest.raises(PayloadTooLargeError):  # another sender
            Receiver(client_keys=[KEY], max_items=1).handle(envelope("Presence", bind(), bind()))
    assert [type(e) for e in errors] == [InvalidEnvelopeError, AuthenticationError]
    assert "Refused a webhook request" in caplog.text
    assert KEY not in caplog.text


def test_strict_mode_refuses_a_request_with_a_bad_item() -> None:
    receiver = Receiver(client_keys=[KEY], strict=True)
    sent: list[str] = []
    for signal in (signals.envelope_received, signals.event_rejected, signals.envelope_rejected):
        signal.connect(lambda s, _n=signal.name, **kw: sent.append(_n), sender=receiver, weak=False)
    handled: list[Event] = []
    receiver.on_event(handled.append)
    with pytest.raises(InvalidEnvelopeError) as info:
        receiver.handle(envelope("Presence", bind(), {"channel": "x"}))
    assert [(r.envelope, r.index) for r in info.value.rejected] == [(0, 1)]
    assert handled == []
    assert sent == ["envelope-rejected"]
    assert len(receiver.handle(envelope("Presence", bind())).accepted) == 1


# -- dispatch ---------------------------------------------------------------------------------


def test_decorators_route_by_event_kind(receiver: Receiver) -> None:
    calls: list[tuple[str, str]] = []
    for name in ("bind", "unbind", "presence", "message", "unknown", "event"):
        decorator = getattr(receiver, f"on_{name}")
        decorator(lambda e, _n=name: calls.append((_n, type(e).__name__)))
    body = {
        "items": [
            envelope("Presence", bind(), unbind(), bind(action="kick") | {"action": "kick"})[
                "items"
            ],
            envelope("Message", message())["items"],
            envelope("Occupancy", {"channel": "room"})["items"],
        ]
    }
    receiver.handle(body)
    assert calls == [
        ("bind", "BindEvent"),
        ("presence", "BindEvent"),
        ("event", "BindEvent"),
        ("unbind", "UnbindEvent"),
        ("presence", "UnbindEvent"),
        ("event", "UnbindEvent"),
        ("presence", "PresenceEvent"),
        ("event", "PresenceEvent"),
        ("message", "MessageEvent"),
        ("event", "MessageEvent"),
        ("unknown", "UnknownEvent"),
        ("event", "UnknownEvent"),
    ]


def test_handlers_run_in_registration_order_across_kinds(receiver: Receiver) -> None:
    calls: list[str] = []
    receiver.on_event(lambda e: calls.append("event"))
    receiver.on_presence(lambda e: calls.append("presence"))
    receiver.on_bind(lambda e: calls.append("bind"))
    receiver.handle(envelope("Presence", bind()))
    assert calls == ["event", "presence", "bind"]


def test_decorators_return_the_function_unchanged(receiver: Receiver) -> None:
    def handler(event: BindEvent) -> None: ...

    assert receiver.on_bind(handler) is handler
    assert receiver.on_bind(channel="x")(handler) is handler


def test_handlers_defined_in_a_function_are_held_strongly(receiver: Receiver) -> None:
    seen: list[Event] = []

    def factory() -> None:
        @receiver.on_bind
        def local(event: BindEvent) -> None:
            seen.append(event)

    factory()
    gc.collect()
    receiver.handle(envelope("Presence", bind()))
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("spec", "matching"),
    [
        ("orders-*", ["orders-1", "orders-2", "orders-10", "orders-"]),
        ("orders-?", ["orders-1", "orders-2"]),
        ("orders-[12]", ["orders-1", "orders-2"]),
        ("Orders-1", []),  # case-sensitive
        ("orders-1", ["orders-1"]),
        (re.compile(r"^orders-\d+$"), ["orders-1", "orders-2", "orders-10"]),
        (re.compile(r"\d0"), ["orders-10"]),  # search, not match
        (lambda channel: channel.endswith("0"), ["orders-10"]),
    ],
)
def test_channel_filters(receiver: Receiver, spec: t.Any, matching: list[str]) -> None:
    seen: list[str] = []
    receiver.on_message(channel=spec)(lambda e: seen.append(e.channel))
    channels = ["orders-1", "orders-2", "orders-10", "orders-", "other"]
    receiver.handle(envelope("Message", *(message(channel=c) for c in channels)))
    assert seen == matching


def test_string_filters_are_globs_so_brackets_need_a_regex(receiver: Receiver) -> None:
    seen: list[str] = []
    receiver.on_message(channel="[a]")(lambda e: seen.append(e.channel))
    receiver.on_message(channel=re.compile(re.escape("[a]")))(
        lambda e: seen.append("re:" + e.channel)
    )
    receiver.handle(envelope("Message", message(channel="[a]"), message(channel="a")))
    assert seen == ["re:[a]", "a"]


def test_none_values_never_match_a_filter(receiver: Receiver) -> None:
    seen: list[object] = []
    receiver.on_bind(uuid="*")(seen.append)
    receiver.on_bind(uuid=lambda value: True)(seen.append)
    receiver.on_bind(uuid=re.compile(""))(seen.append)
    receiver.on_unknown(channel="*")(seen.append)
    receiver.handle(envelope("Presence", {"channel": "room", "action": "bind"}))
    receiver.handle(envelope("Occupancy", {"uuid": "u1"}))
    assert seen == []


def test_filters_combine_channel_and_uuid(receiver: Receiver) -> None:
    seen: list[tuple[str, str | None]] = []
    receiver.on_bind(channel="game-*", uuid="admin-*")(lambda e: seen.append((e.channel, e.uuid)))
    receiver.handle(
        envelope(
            "Presence", bind("game-1", "admin-1"), bind("game-1", "u1"), bind("lobby", "admin-2")
        )
    )
    assert seen == [("game-1", "admin-1")]


def test_a_bad_filter_is_refused_at_registration(receiver: Receiver) -> None:
    with pytest.raises(TypeError, match="channel filter"):
        receiver.on_bind(channel=3)  # type: ignore[call-overload]


def test_handlers_for_lists_matching_handlers_in_call_order(receiver: Receiver) -> None:
    def a(e: Event) -> None: ...
    def b(e: Event) -> None: ...
    def c(e: Event) -> None: ...

    receiver.on_event(a)
    receiver.on_bind(channel="other")(b)
    receiver.on_presence(c)
    event = BindEvent(channel="room", uuid="u1", timestamp=None)
    assert receiver.handlers_for(event) == [a, c]
    assert receiver.handlers_for(
        MessageEvent(channel="room", uuid=None, timestamp=None, message="")
    ) == [a]


def test_signal_order_per_event(receiver: Receiver) -> None:
    calls: list[str] = []
    receiver.on_event(lambda e: calls.append("handler"))
    subscribers = {
        "bind": signals.bind,
        "unbind": signals.unbind,
        "presence": signals.presence,
        "message": signals.message,
        "unknown": signals.unknown_event,
    }
    for name, signal in subscribers.items():
        signal.connect(lambda s, event, _n=name: calls.append(_n), sender=receiver, weak=False)
    try:
        receiver.handle(
            {
                "items": [
                    envelope("Presence", bind(), unbind(), {"channel": "r", "action": "?"})[
                        "items"
                    ],
                    envelope("Message", message())["items"],
                    envelope("Other", {"channel": "r"})["items"],
                ]
            }
        )
    finally:
        for signal in subscribers.values():
            for receiver_id in list(signal.receivers):
                signal.receivers.pop(receiver_id, None)
    assert calls == [
        "handler", "bind", "presence",
        "handler", "unbind", "presence",
        "handler", "presence",
        "handler", "message",
        "handler", "unknown",
    ]  # fmt: skip


def test_bookkeeping_signals_come_before_dispatch(receiver: Receiver) -> None:
    calls: list[str] = []
    receiver.on_event(lambda e: calls.append(f"handler {e.uuid}"))

    def on_received(sender: Receiver, batch: t.Any) -> None:
        calls.append(f"received {len(batch.events)}")

    def on_rejected(sender: Receiver, rejection: t.Any) -> None:
        calls.append(f"rejected {rejection.index}")

    with (
        signals.envelope_received.connected_to(on_received, sender=receiver),
        signals.event_rejected.connected_to(on_rejected, sender=receiver),
    ):
        receiver.handle(envelope("Presence", bind(uuid="a"), {"x": 1}, bind(uuid="b"), {"y": 2}))
    assert calls == ["received 2", "rejected 1", "rejected 3", "handler a", "handler b"]


def test_signals_are_sent_by_the_receiver_only(receiver: Receiver) -> None:
    other = Receiver(client_keys=[KEY])
    seen: list[object] = []
    with signals.bind.connected_to(lambda s, event: seen.append(s), sender=receiver):
        other.handle(envelope("Presence", bind()))
        receiver.handle(envelope("Presence", bind()))
    assert seen == [receiver]


def test_a_request_checks_no_runtime_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    # isinstance() against a runtime-checkable protocol walks its members on every call: once
    # per request it cost more than the rest of a one-item webhook. The receiver decides such
    # things when it is built.
    from yalgaar_receiver.delivery.dedupe import DedupeStore, MemoryDedupeStore

    meta = type(DedupeStore)
    checks: list[object] = []
    original = meta.__instancecheck__

    def counted(cls: t.Any, instance: object) -> bool:
        checks.append(cls)
        return bool(original(cls, instance))

    for store in (None, MemoryDedupeStore()):
        receiver = Receiver(client_keys=[KEY], dedupe=store)
        receiver.on_event(lambda event: None)
        monkeypatch.setattr(meta, "__instancecheck__", counted)
        receiver.handle(envelope("Presence", bind()))
        receiver.emit_batch([])
        monkeypatch.undo()
        assert checks == [], store


def test_listened_is_exact_after_a_subscriber_leaves(receiver: Receiver) -> None:
    # blinker keeps a sender's empty entry after its last subscriber leaves, and its own
    # has_receivers_for stays true while the signal has a subscriber for any other sender.
    other = Receiver(client_keys=[KEY])

    def subscriber(sender: object, **kwargs: object) -> None: ...

    def elsewhere(sender: object, **kwargs: object) -> None: ...

    with signals.handler_finished.connected_to(elsewhere, sender=other):
        assert not receiver.listened(signals.handler_finished)
        signals.handler_finished.connect(subscriber, sender=receiver)
        assert receiver.listened(signals.handler_finished)
        signals.handler_finished.disconnect(subscriber, sender=receiver)
        assert signals.handler_finished.has_receivers_for(receiver)  # blinker's quirk
        assert not receiver.listened(signals.handler_finished)
        assert other.listened(signals.handler_finished)
    assert not other.listened(signals.handler_finished)


def test_handler_calls_are_sent_only_to_this_receivers_subscribers(receiver: Receiver) -> None:
    # Handler calls are observed on blinker's has_receivers_for, true in the quirk above too:
    # there the sends must still reach nobody, and a subscriber of another receiver hears none.
    other = Receiver(client_keys=[KEY])
    receiver.on_bind(lambda event: None)
    other.on_bind(lambda event: None)
    heard: list[str] = []

    def mine(sender: object, **kwargs: object) -> None:
        heard.append("mine")

    def theirs(sender: object, **kwargs: object) -> None:
        heard.append("theirs")

    with signals.handler_finished.connected_to(theirs, sender=other):
        signals.handler_finished.connect(mine, sender=receiver)
        receiver.handle(envelope("Presence", bind()))
        assert heard == ["mine"]
        signals.handler_finished.disconnect(mine, sender=receiver)
        assert signals.handler_finished.has_receivers_for(receiver)  # the quirk
        heard.clear()
        assert receiver.handle(envelope("Presence", bind())).accepted
        assert heard == []
        other.handle(envelope("Presence", bind()))
        assert heard == ["theirs"]


def test_a_failing_handler_does_not_stop_the_others(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @receiver.on_bind
    def broken(event: BindEvent) -> None:
        raise RuntimeError("database down")

    receiver.on_bind(lambda e: calls.append(f"second {e.uuid}"))
    failures: list[dict[str, t.Any]] = []
    with signals.handler_failed.connected_to(lambda s, **kw: failures.append(kw), sender=receiver):
        outcome = receiver.handle(envelope("Presence", bind(uuid="a"), bind(uuid="b")))
    assert calls == ["second a", "second b"]
    assert len(outcome.accepted) == 2
    assert [(f.handler, str(f.error)) for f in outcome.failed] == [
        (broken, "database down"),
        (broken, "database down"),
    ]
    assert [kw["handler"] for kw in failures] == [broken, broken]
    assert failures[0]["event"] == outcome.accepted[0]
    assert "RuntimeError: database down" in caplog.text  # the traceback is logged
    assert KEY not in caplog.text


def test_a_handler_cannot_change_what_later_handlers_see(receiver: Receiver) -> None:
    seen: list[tuple[t.Any, ...]] = []

    @receiver.on_bind
    def meddler(event: BindEvent) -> None:
        raw: t.Any = event.raw  # typed as a Mapping; written to here on purpose
        changes: list[t.Callable[[], object]] = [
            lambda: raw.__setitem__("channel", "forged"),
            lambda: raw["state"]["tags"].append("forged"),
            lambda: event.extra["state"].update(typing=False),
            lambda: raw.pop("uuid"),
        ]
        for change in changes:
            with pytest.raises(TypeError, match="read-only"):
                change()
        raw["state"]["tags"].append("forged")  # the handler fails like any other

    @receiver.on_bind
    def reader(event: BindEvent) -> None:
        seen.append((event.raw["channel"], event.raw["state"], dict(event.extra)))

    state = {"typing": True, "tags": ["a"]}
    outcome = receiver.handle(envelope("Presence", bind(state=state)))
    assert seen == [("room", state, {"state": state})]
    [failure] = outcome.failed
    assert failure.handler is meddler and isinstance(failure.error, TypeError)
    copy = dict(outcome.accepted[0].raw)
    copy["channel"] = "mine"  # a copy is the handler's own to change
    assert outcome.accepted[0].raw["channel"] == "room"


def test_a_failing_subscriber_counts_as_a_failure(receiver: Receiver) -> None:
    def subscriber(sender: Receiver, event: Event) -> None:
        raise ValueError("boom")

    later: list[Event] = []
    with (
        signals.bind.connected_to(subscriber, sender=receiver),
        signals.presence.connected_to(lambda s, event: later.append(event), sender=receiver),
    ):
        outcome = receiver.handle(envelope("Presence", bind()))
    assert [f.handler for f in outcome.failed] == [subscriber]
    assert len(later) == 1


def test_failing_bookkeeping_subscribers_are_isolated(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Receiver, **kwargs: t.Any) -> None:
        raise RuntimeError("metrics down")

    handled: list[Event] = []
    receiver.on_event(handled.append)
    with (
        signals.envelope_received.connected_to(broken, sender=receiver),
        signals.event_rejected.connected_to(broken, sender=receiver),
        signals.handler_failed.connected_to(broken, sender=receiver),
        signals.envelope_rejected.connected_to(broken, sender=receiver),
    ):
        receiver.on_bind(lambda e: 1 / 0)
        outcome = receiver.handle(envelope("Presence", bind(), {"bad": True}))
        with pytest.raises(InvalidEnvelopeError):
            receiver.handle(b"[")
    assert len(handled) == 1
    assert len(outcome.failed) == 1  # the handler, not the bookkeeping subscribers
    ignored = [r for r in caplog.records if "raised; ignored" in r.getMessage()]
    assert len(ignored) == 4


def test_async_handlers_run_to_completion(receiver: Receiver) -> None:
    seen: list[str] = []

    @receiver.on_bind
    async def handler(event: BindEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.channel)

    async def subscriber(sender: Receiver, event: Event) -> None:
        seen.append("subscriber")

    @receiver.on_unbind
    async def failing(event: UnbindEvent) -> None:
        raise LookupError("async failure")

    with signals.bind.connected_to(subscriber, sender=receiver):
        outcome = receiver.handle(envelope("Presence", bind(), unbind()))
    assert seen == ["room", "subscriber"]
    assert [type(f.error) for f in outcome.failed] == [LookupError]


def test_async_handlers_work_inside_a_running_loop(receiver: Receiver) -> None:
    seen: list[str] = []

    @receiver.on_message
    async def handler(event: MessageEvent) -> None:
        seen.append(event.message)

    async def main() -> None:
        receiver.handle(envelope("Message", message(text="from a loop")))

    asyncio.run(main())
    assert seen == ["from a loop"]


def test_emit_runs_one_event(receiver: Receiver) -> None:
    seen: list[Event] = []
    receiver.on_presence(seen.append)
    event = PresenceEvent(channel="room", uuid=None, timestamp=None, raw_action="kick")
    assert receiver.emit(event) == ()
    assert seen == [event]


def test_subclassed_events_still_reach_their_signals(receiver: Receiver) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True, kw_only=True)
    class VipBind(BindEvent):
        pass

    seen: list[Event] = []
    with signals.bind.connected_to(lambda s, event: seen.append(event), sender=receiver):
        receiver.emit(VipBind(channel="room", uuid="u", timestamp=None))
    assert len(seen) == 1


def test_unknown_events_are_dispatched_not_refused(receiver: Receiver) -> None:
    seen: list[UnknownEvent] = []
    receiver.on_unknown(seen.append)
    outcome = receiver.handle(payload("source-unknown.json"))
    assert [e.source for e in seen] == ["Occupancy", "Occupancy"]
    assert len(outcome.rejected) == 1


def test_no_handlers_is_fine(receiver: Receiver) -> None:
    outcome = receiver.handle(payload("presence-actions.json"))
    assert len(outcome.accepted) == 12 and outcome.failed == ()


def test_logging_an_event_never_leaks_the_key(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.on_event(lambda e: logging.getLogger("app").info("got %r", e))
    receiver.handle(payload("presence-bind.json"))
    assert "got BindEvent(" in caplog.text
    assert KEY not in caplog.text


def test_signal_kwargs_are_documented_names() -> None:
    names = {
        name: getattr(signals, name).name
        for name in dir(signals)
        if isinstance(getattr(signals, name), Signal)
    }
    assert names == {
        "envelope_received": "envelope-received",
        "presence": "presence",
        "bind": "bind",
        "unbind": "unbind",
        "message": "message",
        "unknown_event": "unknown-event",
        "event_rejected": "event-rejected",
        "payload_rejected": "payload-rejected",
        "envelope_rejected": "envelope-rejected",
        "possible_loss": "possible-loss",
        "request_started": "request-started",
        "request_answered": "request-answered",
        "handler_started": "handler-started",
        "handler_finished": "handler-finished",
        "task_publishing": "task-publishing",
        "task_started": "task-started",
        "task_finished": "task-finished",
        "handler_failed": "handler-failed",
        "duplicate_event": "duplicate-event",
        "event_dead_lettered": "event-dead-lettered",
        "source_mismatch": "source-mismatch",
        "member_joined": "member-joined",
        "member_left": "member-left",
        "channel_occupied": "channel-occupied",
        "channel_vacated": "channel-vacated",
        "presence_applied": "presence-applied",
        "presence_handler_failed": "presence-handler-failed",
    }
