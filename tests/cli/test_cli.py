"""The ``yalgaar-receiver`` command line: every command in-process with click's CliRunner against
a real server on 127.0.0.1, and the installed script end to end in processes of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import typing as t
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from werkzeug.serving import make_server

from yalgaar_receiver import BindEvent, MessageEvent, Receiver, create_blueprint
from yalgaar_receiver.cli import main
from yalgaar_receiver.encryption import MessageKeys
from yalgaar_receiver.testing import (
    Capture,
    bind,
    capture_events,
    message_envelope,
    presence_envelope,
)

from ..payloads import DIRECTORY
from ..servers import free_port

KEY = "ck-0123456789abcdef"
TOKEN = "t0ken-for-the-tests"


class Server(t.NamedTuple):
    url: str
    receiver: Receiver
    capture: Capture


@pytest.fixture
def server() -> t.Iterator[Server]:
    """A real receiver app served by Werkzeug on a free 127.0.0.1 port, in a thread."""
    receiver = Receiver(client_keys=[KEY])
    app = Flask(__name__)
    # Secured as a deployment is (docs/security.md): the token is part of the URL posted to.
    app.register_blueprint(create_blueprint(receiver, url_tokens=[TOKEN]), url_prefix="/yalgaar")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with capture_events(receiver) as capture:
            url = f"http://127.0.0.1:{httpd.server_port}/yalgaar/{TOKEN}"
            yield Server(url, receiver, capture)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/presence"


@pytest.mark.parametrize("command", ["send", "listen", "replay", "validate", "demo"])
def test_every_help_shows_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "yalgaar-receiver " + command in result.output


def test_version_and_group_help() -> None:
    assert "yalgaar-receiver, version" in invoke("--version").output
    assert all(c in invoke("--help").output for c in ("send", "listen", "replay", "validate"))


# -- send --------------------------------------------------------------------------------------


def test_send_presence_batches(server: Server) -> None:
    result = invoke(
        "send", "presence", "--url", f"{server.url}/presence", "--client-key", KEY,
        "--channel", "lobby", "--uuid", "alice", "--action", "unbind",
        "--count", "5", "--batch", "2", "--interval", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "request 1/3: 2 item(s) -> 200 accepted=2 rejected=0 failed=0",
        "request 2/3: 2 item(s) -> 200 accepted=2 rejected=0 failed=0",
        "request 3/3: 1 item(s) -> 200 accepted=1 rejected=0 failed=0",
    ]
    assert [e.event_type for e in server.capture.events] == ["unbind"] * 5
    assert [len(b.events) for b in server.capture.envelopes] == [2, 2, 1]


def test_send_messages_default_to_json_text(server: Server) -> None:
    result = invoke(
        "send", "message", "--url", f"{server.url}/message", "--client-key", KEY,
        "--channel", "lobby", "--uuid", "bob", "--count", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    events = server.capture.of_type(MessageEvent)
    assert [e.json() for e in events] == [{"n": 1, "text": "hello"}, {"n": 2, "text": "hello"}]
    assert all(e.client_key == KEY and e.timestamp is not None for e in events)


def test_send_reports_a_refusal_and_exits_1(server: Server) -> None:
    result = invoke(
        "send", "message", "--url", f"{server.url}/message", "--client-key", "ck-wrong",
        "--channel", "c", "--uuid", "u", "--message", "hi",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "403 Forbidden" in result.output


def test_send_to_a_closed_port_is_one_line() -> None:
    result = invoke(
        "send", "presence", "--url", refused_url(), "--client-key", KEY,
        "--channel", "c", "--uuid", "u",
    )  # fmt: skip
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: Cannot reach http://127.0.0.1:")
    assert "connection refused" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x/"], "not an http:// or https:// URL"),
        (["--url", "http://127.0.0.1:1/", "--batch", "201"], "201 is not in the range"),
        (["--url", "http://127.0.0.1:1/", "--message", "x"], "--message is for message"),
    ],
)
def test_send_usage_errors(args: list[str], message: str) -> None:
    common = ["send", "presence", "--client-key", "k", "--channel", "c", "--uuid", "u"]
    result = invoke(*common, *args)
    assert result.exit_code == 2
    assert message in result.output


# -- validate ----------------------------------------------------------------------------------


def test_validate_prints_events_and_exits_0() -> None:
    result = invoke("validate", str(DIRECTORY / "presence-bind.json"))
    assert result.exit_code == 0, result.output
    assert "1 event(s), ok" in result.output
    assert "bind     channel='lobby' uuid='User-1a2b3c4d' at=2018-03-21T05:20:00Z" in result.output


def test_validate_reports_rejections_and_refusals_and_exits_1() -> None:
    result = invoke(
        "validate", str(DIRECTORY / "doc-presence.json"), str(DIRECTORY / "not-json.txt")
    )
    assert result.exit_code == 1
    assert "rejected envelope 0 item 0: channel: The channel may not be empty." in result.output
    assert "not-json.txt: refused: The body is not valid JSON" in result.output


def test_validate_reads_json_lines_from_stdin() -> None:
    bodies = [
        presence_envelope(bind("a", "u1", at=1), client_key=KEY).to_text(),
        "",
        '{"source": "Message", "data": [{"channel": "b", "message": "hi"}]}',
    ]
    result = invoke("validate", "-", input="\n".join(bodies))
    assert result.exit_code == 0, result.output
    assert "<stdin>:1: 1 event(s), ok" in result.output
    assert "<stdin>:3: 1 event(s), ok" in result.output


def test_validate_source_hint() -> None:
    body = '{"items": {"clientKey": "k", "data": [{"channel": "c", "message": "m"}]}}'
    result = invoke("validate", "--source", "message", "-", input=body)
    assert result.exit_code == 0 and "message  channel='c'" in result.output


def test_validate_missing_file_is_a_usage_error() -> None:
    result = invoke("validate", "no-such-file.json")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "no-such-file.json" in result.output


# -- replay ------------------------------------------------------------------------------------


def test_replay_posts_every_line_and_counts_statuses(server: Server, tmp_path: Path) -> None:
    lines = [
        presence_envelope(bind("lobby", "alice", at=10), client_key=KEY).to_text(),
        presence_envelope(bind("lobby", "bob", at=11), client_key=KEY).to_text(),
        presence_envelope(bind("lobby", "eve", at=12), client_key="ck-wrong").to_text(),
    ]
    file = tmp_path / "seen.jsonl"
    file.write_text("\n".join(lines) + "\n\n")
    result = invoke("replay", str(file), "--url", f"{server.url}/presence", "--rate", "1000")
    assert result.exit_code == 1, result.output  # one answer was a 403
    assert "Replayed 3 bodies" in result.output
    assert "statuses 200: 2, 403: 1." in result.output
    assert [e.uuid for e in server.capture.of_type(BindEvent)] == ["alice", "bob"]


def test_replay_checks_the_whole_file_before_sending(server: Server, tmp_path: Path) -> None:
    file = tmp_path / "broken.jsonl"
    file.write_text('{"items": {}}\n{"items": \n')
    result = invoke("replay", str(file), "--url", f"{server.url}/")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {file}:2: not JSON")
    assert len(result.output.strip().splitlines()) == 1
    assert server.capture.records == []


def test_replay_to_a_closed_port_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "one.jsonl"
    file.write_text('{"items": {}}\n')
    result = invoke("replay", str(file), "--url", refused_url())
    assert result.exit_code == 1
    assert "Error: Cannot reach" in result.output and "connection refused" in result.output
    assert "Traceback" not in result.output


def test_replay_of_an_empty_file(tmp_path: Path) -> None:
    file = tmp_path / "empty.jsonl"
    file.write_text("\n")
    result = invoke("replay", str(file), "--url", "http://127.0.0.1:1/")
    assert result.exit_code == 1 and "holds no JSON bodies" in result.output


# -- demo and listen ---------------------------------------------------------------------------


def test_demo_runs_the_whole_story() -> None:
    result = invoke("demo", "--delay", "0")
    assert result.exit_code == 0, result.output
    output = result.output
    assert "handler: alice joined #lobby" in output
    assert "handler: bob in #lobby says 'hi alice!'" in output
    assert "signal:  rejected envelope 0 item 1: channel:" in output
    assert "-> 200 accepted=1 rejected=1 failed=0" in output
    assert output.count("-> 403 Forbidden") == 2
    assert "signal:  request refused: The clientKey of envelope 0 matches no" in output
    assert "failed the url_token check" in output
    assert "handler: eve" not in output and "handler: mallory" not in output
    assert "handler: bob left #lobby; online: alice" in output
    assert output.rstrip().endswith("Done: 6 requests; online now: alice.")


def test_listen_on_a_busy_port_is_one_line(server: Server) -> None:
    port = server.url.split(":")[2].split("/")[0]
    result = invoke("listen", "--port", port)
    assert result.exit_code == 1
    assert f"Error: Cannot listen on 127.0.0.1:{port}" in result.output


#: The console script that pip installed next to this interpreter.
SCRIPT = str(Path(sys.executable).with_name("yalgaar-receiver"))


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"listen exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"listen did not open port {port} within {timeout} s")


def test_listen_send_replay_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    capture = tmp_path / "seen.jsonl"
    listen = subprocess.Popen(
        [SCRIPT, "listen", "--port", str(port), "--client-key", KEY, "--capture", str(capture)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_for_port(port, listen)
        base = f"http://127.0.0.1:{port}"
        sent = subprocess.run(
            [
                SCRIPT, "send", "presence", "--url", f"{base}/presence", "--client-key", KEY,
                "--channel", "lobby", "--uuid", "alice", "--count", "2", "--interval", "0",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert "200 accepted=2" in sent.stdout
        bad = subprocess.run(
            [SCRIPT, "replay", "-", "--url", f"{base}/"],
            input='{"items": {"source": "Message", "clientKey": "nope", "data": []}}\n',
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert bad.returncode == 1 and "403: 1" in bad.stdout
        # A chunked body (no Content-Length) is captured and received whole too.
        chunks = [b'{"items": {"source": "Presence", "clientKey": "', KEY.encode(), b'", "data": [',
                  b'{"channel": "lobby", "uuid": "carol", "action": "bind"}]}}']  # fmt: skip
        request = urllib.request.Request(f"{base}/presence", data=iter(chunks), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["accepted"] == 1
    finally:
        output = stop(listen)
    assert f"Listening on http://127.0.0.1:{port}/presence" in output
    assert output.count("bind     channel='lobby' uuid='alice'") == 2
    assert "refused (AuthenticationError)" in output
    assert "Traceback" not in output
    lines = [json.loads(line) for line in capture.read_text().splitlines()]
    assert len(lines) == 3
    assert lines[0]["items"]["data"][0]["uuid"] == "alice"
    assert lines[1]["items"]["clientKey"] == "nope"
    assert lines[2]["items"]["data"][0]["uuid"] == "carol"
    assert "bind     channel='lobby' uuid='carol'" in output

    # What was captured is what `validate` reads.
    checked = invoke("validate", str(capture))
    assert checked.exit_code == 0, checked.output
    assert f"{capture}:1: 2 event(s), ok" in checked.output


def stop(process: subprocess.Popen[str]) -> str:
    """Terminate a server process, kill it if it lingers, and return its output."""
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=20)
    return output


def test_send_to_a_server_that_never_answers_times_out() -> None:
    import socket

    # A listening socket that nobody accepts from: the connection opens, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        result = invoke(
            "send", "presence", "--url", f"http://127.0.0.1:{port}/presence",
            "--client-key", KEY, "--channel", "c", "--uuid", "u", "--timeout", "0.3",
        )  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: http://127.0.0.1:{port}/presence did not answer within 0.3 s."
    )


# -- the command line agrees with the receiver -------------------------------------------------


def test_send_to_a_wrong_path_says_what_the_status_means(server: Server) -> None:
    result = invoke(
        "send", "presence", "--url", f"{server.url}/nowhere/presence", "--client-key", KEY,
        "--channel", "c", "--uuid", "u",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "404 Not Found" in result.output
    assert "no receiver route at this URL" in result.output
    # An HTML error page (a path outside the blueprint) gets the same hint.
    outside = server.url.split("/yalgaar/")[0] + "/elsewhere"
    result = invoke(
        "send", "presence", "--url", outside, "--client-key", KEY, "--channel", "c", "--uuid", "u"
    )
    assert result.exit_code == 1
    assert "<!doctype" in result.output.lower() and "no receiver route" in result.output


def test_send_shows_the_receiver_s_warning_about_swapped_urls(server: Server) -> None:
    result = invoke(
        "send", "presence", "--url", f"{server.url}/message", "--client-key", KEY,
        "--channel", "c", "--uuid", "u",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: A Presence envelope came to the Message URL" in result.output


def test_validate_applies_the_receiver_s_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    item = {"channel": "c", "uuid": "u", "timestamp": "1", "message": "x" * 20_000}
    big.write_bytes(message_envelope(*[item] * 110, client_key=KEY).to_bytes())
    result = invoke("validate", str(big))
    assert result.exit_code == 1
    assert "refused: The body has" in result.output and "max_body_bytes=1048576" in result.output
    assert invoke("validate", "--max-body-bytes", "5000000", str(big)).exit_code == 0
    many = tmp_path / "many.json"
    many.write_bytes(presence_envelope(*[bind("c", "u", at=1)] * 3, client_key=KEY).to_bytes())
    result = invoke("validate", "--max-items", "2", str(many))
    assert result.exit_code == 1 and "more than max_items=2" in result.output


def test_replay_reads_a_pretty_printed_body_as_validate_does(
    server: Server, tmp_path: Path
) -> None:
    file = tmp_path / "pretty.json"
    body = presence_envelope(bind("lobby", "alice", at=10), client_key=KEY)
    file.write_text(json.dumps(body, indent=2))
    assert invoke("validate", str(file)).exit_code == 0
    result = invoke("replay", str(file), "--url", f"{server.url}/presence", "--rate", "1000")
    assert result.exit_code == 0, result.output
    assert "Replayed 1 bodies" in result.output
    assert [e.uuid for e in server.capture.of_type(BindEvent)] == ["alice"]


def test_send_encrypts_each_message_as_the_sdk_does(server: Server) -> None:
    result = invoke(
        "send", "message", "--url", f"{server.url}/message", "--client-key", KEY,
        "--channel", "vault", "--uuid", "bob", "--message", "the plan", "--encrypt-key", "s3cret",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [event] = server.capture.of_type(MessageEvent)
    assert event.message != "the plan"  # this receiver has no key: it sees the ciphertext
    assert MessageKeys(["s3cret"]).decrypt(event.message) == "the plan"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--encrypt-key", "k" * 40], "40 bytes long"),
        (["--encrypt-key", "k", "--action", "bind"], "for message webhooks"),
    ],
)
def test_send_refuses_a_key_it_cannot_use(args: list[str], message: str) -> None:
    source = "presence" if "--action" in args else "message"
    result = invoke(
        "send", source, "--url", refused_url(), "--client-key", KEY, "--channel", "c",
        "--uuid", "u", *args,
    )  # fmt: skip
    assert result.exit_code == 2 and message in result.output


def test_listen_shows_messages_decrypted(tmp_path: Path) -> None:
    port = free_port()
    listen = subprocess.Popen(
        [SCRIPT, "listen", "--port", str(port), "--client-key", KEY, "--message-key", "s3cret"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_for_port(port, listen)
        url = f"http://127.0.0.1:{port}/message"
        for extra in (["--encrypt-key", "s3cret"], []):
            sent = subprocess.run(
                [
                    SCRIPT, "send", "message", "--url", url, "--client-key", KEY,
                    "--channel", "vault", "--uuid", "bob", "--message", "the plan", *extra,
                ],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
    finally:
        output = stop(listen)
    assert "message  channel='vault' uuid='bob'" in output
    assert "message='the plan' (decrypted)" in output
    assert "rejected envelope 0 item 0: message: The message is not base64 text" in output
