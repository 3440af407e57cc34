"""A live presence dashboard: a receiver, a tracker, and one page fed by server-sent events.

Run it with ``flask --app examples.presence_dashboard.dashboard run`` (see ``docs/presence.md``).
Every transition the tracker sends, and every raw presence event the receiver gets, is pushed to
each open page; the page shows every channel, its occupancy and its members, and highlights joins
and departures for a moment. When presence looks wrong, this is the page to open: the event log
shows what Yalgaar sent, the cards show what the tracker made of it.

Streams are bounded so that they never hold a worker for ever: a heartbeat comment every
``YALGAAR_DASHBOARD_HEARTBEAT_SECONDS`` (a client that went away is noticed at the next write),
and an end after ``YALGAAR_DASHBOARD_STREAM_SECONDS``, when the browser reconnects by itself and
gets a fresh snapshot.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import typing as t
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, jsonify, render_template

from yalgaar_receiver import Event, PresenceEvent, Receiver, create_blueprint, signals
from yalgaar_receiver.flask.auth import SETTINGS
from yalgaar_receiver.presence import (
    MemoryPresenceStore,
    PresenceStore,
    PresenceTracker,
    RedisPresenceStore,
)

__all__ = ["Dashboard", "create_app"]

#: Settings and their defaults; each may also come from an environment variable of that name.
DEFAULTS: t.Final[t.Mapping[str, t.Any]] = {
    "YALGAAR_ALLOW_UNAUTHENTICATED": False,
    "YALGAAR_PRESENCE_GRACE_SECONDS": 3.0,
    "YALGAAR_PRESENCE_REDIS_URL": "",
    "YALGAAR_DASHBOARD_HEARTBEAT_SECONDS": 15.0,
    "YALGAAR_DASHBOARD_STREAM_SECONDS": 300.0,
}
_TRUE: t.Final = frozenset({"1", "true", "yes", "on"})

#: A message for the pages: the SSE event name and its JSON data; ``None`` ends every stream.
Message = tuple[str, str] | None


class Hub:
    """Fans messages out to every open stream; a stream that falls behind is dropped."""

    def __init__(self, backlog: int = 1000) -> None:
        self._lock = threading.Lock()
        self._queues: set[queue.Queue[Message]] = set()
        self._backlog = backlog
        self.closed = False

    def subscribe(self) -> queue.Queue[Message]:
        subscriber: queue.Queue[Message] = queue.Queue(self._backlog)
        with self._lock:
            if self.closed:
                subscriber.put(None)
            self._queues.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: queue.Queue[Message]) -> None:
        with self._lock:
            self._queues.discard(subscriber)

    def publish(self, name: str, data: t.Mapping[str, t.Any]) -> None:
        message = (name, json.dumps(data))
        with self._lock:
            for subscriber in list(self._queues):
                try:
                    subscriber.put_nowait(message)
                except queue.Full:
                    # A page that stopped reading: end its stream; it reconnects with a snapshot.
                    self._queues.discard(subscriber)

    def close(self) -> None:
        """End every stream now (at shutdown, and in tests)."""
        with self._lock:
            self.closed = True
            for subscriber in self._queues:
                try:
                    subscriber.put_nowait(None)
                except queue.Full:
                    pass


@dataclass
class Dashboard:
    """What the app keeps in ``app.extensions["presence_dashboard"]``."""

    receiver: Receiver
    tracker: PresenceTracker
    hub: Hub
    #: Called by :meth:`close`, after the tracker stopped: disconnect, close clients.
    cleanups: list[t.Callable[[], None]] = field(default_factory=list)

    def snapshot(self) -> dict[str, t.Any]:
        """Every channel with its members, sorted, as the page renders it."""
        channels = [self.channel(name) for name in sorted(self.tracker.channels())]
        return {"channels": channels, "grace_seconds": self.tracker.rules.grace_seconds}

    def channel(self, channel: str) -> dict[str, t.Any]:
        """One channel's members, and which of them are in their grace time."""
        members = sorted(self.tracker.members(channel))
        return {
            "channel": channel,
            "members": members,
            "occupancy": len(members),
            "departing": sorted(self.tracker.departing(channel)),
        }

    def close(self) -> None:
        """End the streams and stop the tracker."""
        self.hub.close()
        self.tracker.close()
        for cleanup in self.cleanups:
            cleanup()


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the dashboard app.

    :param config: settings that override :data:`DEFAULTS` and the environment, plus any Flask
        setting (``YALGAAR_CLIENT_KEYS`` is read by the receiver's blueprint).
    """
    app = Flask(__name__)
    # The receiver's blueprint reads the client keys and the security settings
    # (docs/security.md) from the config; they may come from the environment too.
    for key in (*DEFAULTS, "YALGAAR_CLIENT_KEYS", *SETTINGS.values()):
        if key in os.environ:
            app.config[key] = os.environ[key]
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    app.config.update(config or {})

    receiver = Receiver(allow_unauthenticated=_flag(app.config["YALGAAR_ALLOW_UNAUTHENTICATED"]))
    cleanups: list[t.Callable[[], None]] = []
    tracker = PresenceTracker(
        receiver,
        store=_store(str(app.config["YALGAAR_PRESENCE_REDIS_URL"]), cleanups),
        grace_seconds=float(app.config["YALGAAR_PRESENCE_GRACE_SECONDS"]),
    )
    dashboard = Dashboard(receiver=receiver, tracker=tracker, hub=Hub(), cleanups=cleanups)
    app.extensions["presence_dashboard"] = dashboard
    _connect(dashboard)
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")

    @app.get("/")
    def index() -> str:
        return render_template("dashboard.html", snapshot=dashboard.snapshot())

    @app.get("/state")
    def state() -> Response:
        return jsonify(dashboard.snapshot())

    @app.get("/stream")
    def stream() -> Response:
        settings = current_app.config
        heartbeat = float(settings["YALGAAR_DASHBOARD_HEARTBEAT_SECONDS"])
        lifetime = float(settings["YALGAAR_DASHBOARD_STREAM_SECONDS"])
        return Response(
            _events(dashboard, heartbeat, lifetime),
            mimetype="text/event-stream",
            # No caching, and no buffering by a proxy in front (nginx reads this header).
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def _connect(dashboard: Dashboard) -> None:
    """Publish every raw presence event, every transition, and the channel's state after each
    event, to the pages."""
    tracker, hub, receiver = dashboard.tracker, dashboard.hub, dashboard.receiver

    def change(kind: str) -> t.Callable[..., None]:
        def publish(channel: str, uuid: str | None = None) -> None:
            hub.publish("change", {"kind": kind, "uuid": uuid, **dashboard.channel(channel)})

        return publish

    tracker.on_member_joined(change("member_joined"))
    tracker.on_member_left(change("member_left"))
    tracker.on_channel_occupied(change("channel_occupied"))
    tracker.on_channel_vacated(change("channel_vacated"))

    # The tracker applies a request's binds and unbinds together once its events have run, then
    # says which channels it applied: the state published here shows a departure entering or
    # leaving its grace time, which no transition announces.
    def settled(sender: PresenceTracker, *, channels: frozenset[str], **extra: t.Any) -> None:
        for channel in sorted(channels):
            hub.publish("channel", dashboard.channel(channel))

    signals.presence_applied.connect(settled, sender=tracker, weak=False)
    dashboard.cleanups.append(lambda: signals.presence_applied.disconnect(settled))

    # A decorated handler runs before the tracker: the log shows the event before its effects.
    @receiver.on_presence
    def raw(event: Event) -> None:
        assert isinstance(event, PresenceEvent)
        hub.publish(
            "presence",
            {
                "action": event.action.value,
                "raw_action": event.raw_action,
                "channel": event.channel,
                "uuid": event.uuid,
                "timestamp": None if event.timestamp is None else event.timestamp.isoformat(),
            },
        )


def _events(dashboard: Dashboard, heartbeat: float, lifetime: float) -> t.Iterator[str]:
    # Subscribe before the snapshot: a change made in between is then both in the snapshot and
    # in the queue, and applying it twice is harmless because each message carries the
    # channel's whole member list.
    subscriber = dashboard.hub.subscribe()
    try:
        yield "retry: 2000\n\n"
        yield _sse("snapshot", json.dumps(dashboard.snapshot()))
        end = time.monotonic() + lifetime
        while (remaining := end - time.monotonic()) > 0:
            try:
                message = subscriber.get(timeout=min(heartbeat, remaining))
            except queue.Empty:
                yield ": heartbeat\n\n"
                continue
            if message is None:
                return
            yield _sse(*message)
    finally:
        dashboard.hub.unsubscribe(subscriber)


def _sse(name: str, data: str) -> str:
    # json.dumps never writes a raw newline, so the data is always one line.
    return f"event: {name}\ndata: {data}\n\n"


def _store(redis_url: str, cleanups: list[t.Callable[[], None]]) -> PresenceStore:
    if not redis_url:
        return MemoryPresenceStore()
    import redis  # only when asked for: the dashboard runs without the redis extra

    client = redis.Redis.from_url(redis_url)
    cleanups.append(client.close)
    return RedisPresenceStore(client)


def _flag(value: object) -> bool:
    return value is True or str(value).strip().lower() in _TRUE
