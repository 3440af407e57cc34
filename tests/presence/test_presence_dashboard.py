"""The presence dashboard example: its routes, its bounded event stream, and the page in a real
headless Chromium that must show binds and unbinds as they are posted, without a reload."""

from __future__ import annotations

import json
import threading
import typing as t
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from examples.presence_dashboard.dashboard import Dashboard, create_app
from yalgaar_receiver.presence import RedisPresenceStore

from ..presence_kit import KEY, body
from ..servers import RedisServer, require_program

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def make_app(stream_seconds: float, grace_seconds: float = 0) -> Flask:
    return create_app(
        {
            "YALGAAR_CLIENT_KEYS": [KEY],
            "YALGAAR_ALLOW_CLIENT_KEY_ONLY": True,  # see test_auth.py
            "YALGAAR_PRESENCE_GRACE_SECONDS": grace_seconds,
            "YALGAAR_DASHBOARD_HEARTBEAT_SECONDS": 0.2,
            "YALGAAR_DASHBOARD_STREAM_SECONDS": stream_seconds,
        }
    )


@pytest.fixture
def app() -> t.Iterator[Flask]:
    """An app whose streams end after one second."""
    app = make_app(stream_seconds=1.0)
    yield app
    dashboard(app).close()


def dashboard(app: Flask) -> Dashboard:
    found = app.extensions["presence_dashboard"]
    assert isinstance(found, Dashboard)
    return found


def test_posted_webhooks_show_in_the_state(app: Flask) -> None:
    client = app.test_client()
    answer = client.post("/yalgaar/presence", data=body(("bind", "game-42", "alice", 100)))
    assert answer.status_code == 200
    client.post("/yalgaar/presence", data=body(("bind", "game-42", "bob", 100)))
    assert client.get("/state").get_json()["channels"] == [
        {"channel": "game-42", "members": ["alice", "bob"], "occupancy": 2, "departing": []}
    ]
    page = client.get("/")
    assert page.status_code == 200
    assert b"Yalgaar presence" in page.data and b'"game-42"' in page.data
    assert (
        client.post(
            "/yalgaar/presence", data=body(("bind", "x", "y", 1)).replace(KEY.encode(), b"ck-wrong")
        ).status_code
        == 403
    )


def test_the_stream_sends_a_snapshot_changes_and_heartbeats_then_ends(app: Flask) -> None:
    client = app.test_client()
    client.post("/yalgaar/presence", data=body(("bind", "lobby", "alice", 100)))
    response = client.get("/stream", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert _text(next(chunks)) == "retry: 2000\n\n"
    first = _text(next(chunks))
    assert first.startswith("event: snapshot\n")
    assert json.loads(first.split("data: ", 1)[1])["channels"][0]["members"] == ["alice"]
    # A change made while the stream is open reaches it; the stream then ends by itself
    # (YALGAAR_DASHBOARD_STREAM_SECONDS=1), after heartbeats, so it never pins a worker.
    client.post("/yalgaar/presence", data=body(("unbind", "lobby", "alice", 101)))
    rest = "".join(_text(c) for c in chunks)
    response.close()
    events = [block for block in rest.split("\n\n") if block]
    names = [block.split("\n")[0] for block in events]
    assert "event: presence" in names
    changes = [json.loads(b.split("data: ", 1)[1]) for b in events if b.startswith("event: change")]
    assert [(c["kind"], c["occupancy"]) for c in changes] == [
        ("member_left", 0),
        ("channel_vacated", 0),
    ]
    assert ": heartbeat" in names


def _text(chunk: object) -> str:
    assert isinstance(chunk, (str, bytes))
    return chunk if isinstance(chunk, str) else chunk.decode()


def test_closing_the_dashboard_ends_open_streams(app: Flask) -> None:
    response = app.test_client().get("/stream", buffered=False)
    chunks = iter(response.response)
    next(chunks), next(chunks)  # retry, snapshot
    done = threading.Event()

    def read_rest() -> None:
        for _ in chunks:
            pass
        done.set()

    reader = threading.Thread(target=read_rest)
    reader.start()
    dashboard(app).hub.close()
    reader.join(timeout=10)
    response.close()
    assert done.is_set()


# Records every class that a member chip or a channel card takes, since the highlights last
# only a moment; ``__classes`` also survives only as long as the document does.
WATCH_CLASSES = """() => {
  window.__classes = [];
  new MutationObserver((changes) => {
    for (const change of changes) {
      const data = change.target.dataset || {};
      const name = data.uuid || data.channel;
      if (name) window.__classes.push(`${name} ${change.target.className}`);
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["class"]});
}"""


@pytest.fixture
def served() -> t.Iterator[str]:
    """The app behind a real threaded HTTP server on 127.0.0.1, in a thread of this process;
    its stream outlives the test, and closing the dashboard ends it."""
    app = make_app(stream_seconds=60, grace_seconds=0.5)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        dashboard(app).close()  # ends the page's open stream first
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _has(entry: str, name: str, css_class: str) -> bool:
    owner, *classes = entry.split(" ")
    return owner == name and css_class in classes


def send(base: str, *items: tuple[str, str, str, int | None]) -> None:
    request = urllib.request.Request(
        f"{base}/yalgaar/presence",
        data=body(*items),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_the_page_shows_binds_and_unbinds_live(served: str, tmp_path: Path) -> None:
    chromium = require_program("chromium")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(served + "/")
            expect(page.locator("#status")).to_have_class("live", timeout=10_000)
            page.evaluate(WATCH_CLASSES)  # also marks this document, to prove there is no reload

            send(served, ("bind", "game-42", "alice", 100))
            alice = page.locator('[data-channel="game-42"] [data-uuid="alice"]')
            expect(alice).to_be_visible(timeout=10_000)
            card = page.locator('[data-channel="game-42"]')
            expect(card.locator(".occupancy")).to_have_text("1")

            send(served, ("bind", "game-42", "bob", 101), ("bind", "lobby", "carol", 101))
            expect(card.locator(".occupancy")).to_have_text("2", timeout=10_000)
            expect(page.locator('[data-channel="lobby"] [data-uuid="carol"]')).to_be_visible()
            expect(page.locator("#member-count")).to_have_text("3")
            expect(page.locator("#channel-count")).to_have_text("2")
            page.screenshot(path=str(tmp_path / "dashboard.png"))

            # Unbound, alice stays for the grace time (0.5 s), marked; then she leaves.
            send(served, ("unbind", "game-42", "alice", 102))
            expect(alice).to_have_count(0, timeout=10_000)
            expect(card.locator(".occupancy")).to_have_text("1")

            send(served, ("unbind", "game-42", "bob", 103))
            expect(card).to_have_count(0, timeout=10_000)
            expect(page.locator("#channel-count")).to_have_text("1")
            # 5 raw events and 8 transitions, newest first.
            log = page.locator("#log li")
            expect(log).to_have_count(13)
            expect(log.first).to_contain_text("channel vacated: game-42")
            expect(log.nth(1)).to_contain_text("member left: bob game-42")
            expect(log.nth(2)).to_contain_text("bob game-42")
            expect(log.last).to_contain_text("alice game-42")
            # The highlights are brief, so the page recorded every class a chip or card had.
            seen: list[str] = page.evaluate("window.__classes")

            def first(name: str, css_class: str) -> int:
                """When ``name``'s element first had ``css_class`` (-1: never)."""
                return next((i for i, entry in enumerate(seen) if _has(entry, name, css_class)), -1)

            assert first("alice", "joined") >= 0 and first("game-42", "occupied") >= 0
            assert 0 <= first("alice", "departing") < first("alice", "left")
            assert 0 <= first("bob", "departing") < first("bob", "left")
            assert first("game-42", "vacated") > first("bob", "left")
            assert first("carol", "departing") == first("carol", "left") == -1
            assert page.evaluate("Array.isArray(window.__classes)")  # never reloaded
        finally:
            browser.close()


def test_two_dashboards_share_the_state_through_redis(redis_server: RedisServer) -> None:
    settings = {
        "YALGAAR_CLIENT_KEYS": KEY,  # one comma-separated string, as from the environment
        "YALGAAR_ALLOW_CLIENT_KEY_ONLY": "true",  # see test_auth.py
        "YALGAAR_PRESENCE_GRACE_SECONDS": "0",
        "YALGAAR_PRESENCE_REDIS_URL": redis_server.url,
    }
    first, second = create_app(settings), create_app(settings)
    try:
        first.test_client().post("/yalgaar/presence", data=body(("bind", "hall", "alice", 1)))
        second.test_client().post("/yalgaar/presence", data=body(("bind", "hall", "bob", 2)))
        for app in (first, second):
            state = app.test_client().get("/state").get_json()
            assert state["channels"][0]["members"] == ["alice", "bob"]
        assert isinstance(dashboard(first).tracker.store, RedisPresenceStore)
    finally:
        for app in (first, second):
            dashboard(app).close()  # also closes its redis client
