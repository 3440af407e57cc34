"""Hostile bodies: each gets a 4xx or a sanitised value, never a 500, a hang or a traceback.

Every case is a file in ``tests/payloads/hostile-*``. A handler that raises on every event makes
the receiver log each accepted event, so the log checks below see what input can do to a log
line. The body limit is also tested on a real server on 127.0.0.1, because Flask's test client
does not send chunked bodies.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from yalgaar_receiver import (
    Event,
    MessageEvent,
    PresenceAction,
    PresenceEvent,
    Receiver,
    create_blueprint,
)

PAYLOADS = Path(__file__).parents[1] / "payloads"
CLIENT_KEY = "ck-0123456789abcdef"
HUGE = 10 * 1024 * 1024

# payload file -> (status, uuids of the events handled, number of rejected items)
CASES: dict[str, tuple[int, list[str], int]] = {
    "hostile-deep-nesting.json": (400, [], 0),
    "hostile-huge-exponent.json": (200, ["user-1", "user-4"], 2),
    "hostile-long-integer.json": (400, [], 0),
    "hostile-long-integer-text.json": (200, ["user-1"], 1),
    "hostile-lone-surrogates.json": (200, ["user-1", "user-5"], 3),
    "hostile-surrogate-bytes.bin": (400, [], 0),
    "hostile-duplicate-keys.json": (400, [], 0),
    "hostile-duplicate-keys-item.json": (400, [], 0),
    "hostile-nul-escaped.json": (200, ["user-1"], 2),
    "hostile-nul-raw.bin": (400, [], 0),
    "hostile-nul-outside.bin": (400, [], 0),
    "hostile-control-characters.json": (200, ["user-1", "user-6"], 4),
}


HTTP_SETTINGS = ("max_body_bytes", "fail_on_handler_error")


def make_app(handled: list[Event], **options: t.Any) -> Flask:
    """The receiver app; the blueprint takes the HTTP settings, the receiver the others."""
    http = {name: options.pop(name) for name in HTTP_SETTINGS if name in options}
    receiver = Receiver([CLIENT_KEY], **options)

    @receiver.on_event
    def record(event: Event) -> None:
        handled.append(event)
        # Raising makes the receiver log the event: the log checks need that line.
        raise RuntimeError("handler failed on purpose")

    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(create_blueprint(receiver, **http), url_prefix="/yalgaar")
    return app


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    """No log message holds a line break from the input, or a 10 MB value."""
    for record in caplog.records:
        message = record.getMessage()
        assert not {"\n", "\r", "\u2028", "\u2029", "\x00", "\x1b"} & set(message), message
        assert len(message) < 4096


def assert_no_5xx(response: t.Any, status: int) -> dict[str, t.Any]:
    assert response.status_code == status, response.get_data()[:500]
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    assert len(body) < 8192
    parsed: dict[str, t.Any] = json.loads(body)
    return parsed


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_payload(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    status, uuids, rejected = CASES[name]
    handled: list[Event] = []
    client = make_app(handled, fail_on_handler_error=False).test_client()
    response = client.post("/yalgaar/", data=(PAYLOADS / name).read_bytes())
    body = assert_no_5xx(response, status)
    assert [e.uuid for e in handled] == uuids
    if status == 200:
        assert len(body["rejected"]) == rejected
    assert_clean_logs(caplog)


def test_sanitised_values() -> None:
    handled: list[Event] = []
    client = make_app(handled, fail_on_handler_error=False).test_client()
    client.post("/yalgaar/", data=(PAYLOADS / "hostile-control-characters.json").read_bytes())
    # Surrounding whitespace (a trailing newline) is trimmed; an unknown action keeps its text.
    unknown = handled[1]
    assert isinstance(unknown, PresenceEvent)
    assert unknown.channel == "orders"
    assert unknown.action is PresenceAction.UNKNOWN
    assert unknown.raw_action == "bind\nforged"
    client.post("/yalgaar/", data=(PAYLOADS / "hostile-lone-surrogates.json").read_bytes())
    pair = handled[-1]
    assert isinstance(pair, MessageEvent)
    assert pair.message == "a whole pair: \U0001f600"


def test_deep_nesting_is_refused_whatever_max_depth() -> None:
    # Deeper than any Python's JSON decoder goes (3.11 stops near 1,000 levels, 3.13 near
    # 10,000): still a 400, not a RecursionError, with a max_depth that lets it through.
    levels = 100_000
    item = {"channel": "c", "action": "bind", "extra": "@DEEP@"}
    text = json.dumps({"items": {"source": "Presence", "clientKey": CLIENT_KEY, "data": [item]}})
    body = text.replace('"@DEEP@"', "[" * levels + "]" * levels).encode()
    client = make_app([], max_depth=1_000_000).test_client()
    response = client.post("/yalgaar/", data=body)
    assert "nested deeper" in assert_no_5xx(response, 400)["detail"]


def test_ten_megabyte_strings_inside_an_allowed_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    text = (PAYLOADS / "hostile-huge-string.json").read_text()
    body = text.replace("@HUGE@", "x" * HUGE).encode()
    handled: list[Event] = []
    client = make_app(handled, max_body_bytes=4 * HUGE, fail_on_handler_error=False).test_client()
    result = assert_no_5xx(client.post("/yalgaar/", data=body), 200)
    assert [e.uuid for e in handled] == ["user-1", "user-2"]
    assert isinstance(handled[0], MessageEvent)
    assert len(handled[0].message) == HUGE
    assert len(result["rejected"]) == 1
    assert_clean_logs(caplog)


class Unreadable:
    """A request body that fails the test if anything reads it."""

    def read(self, *args: object) -> bytes:
        raise AssertionError("the body was read")

    readline = readinto = read


def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    handled: list[Event] = []
    client = make_app(handled, max_body_bytes=1000).test_client()
    response = client.post(
        "/yalgaar/",
        environ_overrides={"wsgi.input": Unreadable(), "CONTENT_LENGTH": str(10**12)},
    )
    assert assert_no_5xx(response, 413)["title"] == "Payload too large"
    assert handled == []


# -- a real server, for chunked bodies --------------------------------------------------


@pytest.fixture
def server_port() -> t.Iterator[tuple[int, list[Event]]]:
    handled: list[Event] = []
    receiver = Receiver([CLIENT_KEY])
    receiver.on_event(handled.append)
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(
        create_blueprint(receiver, max_body_bytes=100_000), url_prefix="/yalgaar"
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="chunked-server", daemon=True)
    thread.start()
    try:
        yield server.server_port, handled
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def post_chunked(
    port: int, chunks: t.Iterable[bytes], timeout: float = 20.0, path: str = "/yalgaar/presence"
) -> tuple[int, int]:
    """Send a chunked POST while reading the answer; the status and the bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode()
        )
        answer = b""
        done = threading.Event()

        def read() -> None:
            nonlocal answer
            try:
                while b"\r\n" not in answer:
                    piece = sock.recv(4096)
                    if not piece:
                        break
                    answer += piece
            except OSError:
                pass
            done.set()

        reader = threading.Thread(target=read, name="chunked-reader", daemon=True)
        reader.start()
        try:
            for chunk in chunks:
                if done.is_set():
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed while the body was still coming
        reader.join(timeout=timeout)
        assert not reader.is_alive(), "no answer from the server"
    status = int(answer.split(b" ", 2)[1])
    return status, sent


def test_chunked_body_within_the_limit_is_read_whole(
    server_port: tuple[int, list[Event]],
) -> None:
    port, handled = server_port
    body = (PAYLOADS / "security-presence.json").read_bytes()
    status, _ = post_chunked(port, (body[i : i + 7] for i in range(0, len(body), 7)))
    assert status == 200
    assert [e.uuid for e in handled] == ["user-1", "user-2"]


def test_endless_chunked_body_is_cut_off_at_the_limit(
    server_port: tuple[int, list[Event]],
) -> None:
    port, handled = server_port
    cap = 200 * 1024 * 1024

    def endless() -> t.Iterator[bytes]:
        yield b'{"items": {"source": "Presence", "clientKey": "' + CLIENT_KEY.encode() + b'",'
        sent = 0
        while sent < cap:
            sent += 16384
            yield b" " * 16384

    status, sent = post_chunked(port, endless())
    assert status == 413
    # The answer came long before the body ended: the server stopped at the limit.
    assert sent < cap
    assert handled == []
