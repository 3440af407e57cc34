"""The edges of the HTTP contract, through Flask's test client: methods, paths, encodings.

The same requests over real HTTP under gunicorn are in ``test_edge_gunicorn.py``.
"""

from __future__ import annotations

import gzip
import io
import zlib

import pytest
from flask import Flask
from flask.testing import FlaskClient

from yalgaar_receiver import Receiver, UnsupportedEncodingError, create_blueprint, signals
from yalgaar_receiver.testing import bind, presence_envelope

KEY = "ck-0123456789abcdef"
TOKEN = "tok-0123456789abcdef"
PROBLEM = "application/problem+json"
BODY = presence_envelope(bind("lobby", "alice", at=1521609600), client_key=KEY).to_bytes()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver([KEY])


@pytest.fixture
def client(receiver: Receiver) -> FlaskClient:
    app = Flask(__name__)
    blueprint = create_blueprint(receiver, url_tokens=[TOKEN], max_body_bytes=10_000)
    app.register_blueprint(blueprint, url_prefix="/yalgaar")
    return app.test_client()


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "path",
    [
        f"/yalgaar/{TOKEN}/presence",
        "/yalgaar/wrong-token/presence",
        "/yalgaar/presence",
        "/yalgaar/",
    ],
)
def test_other_methods_are_405_in_the_answer_s_shape(
    client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.mimetype == PROBLEM
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert response.json is not None and response.json["status"] == 405


@pytest.mark.parametrize(
    "path",
    [
        f"/yalgaar/{TOKEN}//presence",
        "/yalgaar//presence",
        f"/yalgaar//{TOKEN}/presence",
        "/yalgaar/nothing/here/at/all",
        f"/yalgaar/{TOKEN}/presence/more",
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_no_path_redirects_and_a_wrong_one_is_404_without_echo(
    client: FlaskClient, path: str, method: str
) -> None:
    response = client.open(path, method=method, data=BODY)
    assert response.status_code == 404
    assert response.mimetype == PROBLEM
    assert "Location" not in response.headers
    assert TOKEN.encode() not in response.data


def test_the_routes_still_answer_with_and_without_a_trailing_slash(client: FlaskClient) -> None:
    for path in (f"/yalgaar/{TOKEN}/presence", f"/yalgaar/{TOKEN}/presence/", f"/yalgaar/{TOKEN}"):
        assert client.post(path, data=BODY).status_code == 200, path
    assert client.get(f"/yalgaar/{TOKEN}/message").status_code == 200


def post_encoded(client: FlaskClient, body: bytes, encoding: str) -> tuple[int, dict[str, object]]:
    response = client.post(
        f"/yalgaar/{TOKEN}/presence", data=body, headers={"Content-Encoding": encoding}
    )
    return response.status_code, response.json or {}


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),  # no zlib header, as some senders do
        ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
        ("identity", lambda data: data),
        ("GZIP", gzip.compress),
    ],
)
def test_compressed_bodies_are_read(client: FlaskClient, encoding: str, compress: object) -> None:
    assert callable(compress)
    status, answer = post_encoded(client, compress(BODY), encoding)
    assert (status, answer.get("accepted")) == (200, 1)


def test_a_body_that_inflates_past_the_limit_stops_at_the_limit(client: FlaskClient) -> None:
    bomb = gzip.compress(b" " * 5_000_000)  # 5 KB that would inflate to 5 MB
    assert len(bomb) < 10_000
    status, answer = post_encoded(client, bomb, "gzip")
    assert status == 413
    assert answer["detail"] == "The body inflates to more than max_body_bytes=10000 bytes."


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_an_encoding_not_read_is_415(
    receiver: Receiver, client: FlaskClient, encoding: str
) -> None:
    with signals.envelope_rejected.connected_to(
        lambda sender, error: refused.append(error), sender=receiver
    ):
        refused: list[BaseException] = []
        status, answer = post_encoded(client, BODY, encoding)
    assert status == 415
    assert "gzip or deflate" in str(answer["detail"])
    assert [type(error) for error in refused] == [UnsupportedEncodingError]


@pytest.mark.parametrize(
    ("body", "encoding", "detail"),
    [
        (b"not gzip at all", "gzip", "not valid gzip data"),
        (gzip.compress(BODY)[:-12], "gzip", "cut short"),
        (b"", "", "The body is empty"),
        (b"  \n", "", "The body is empty"),
    ],
)
def test_unreadable_bodies_are_400_saying_why(
    client: FlaskClient, body: bytes, encoding: str, detail: str
) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = client.post(f"/yalgaar/{TOKEN}/presence", data=body, headers=headers)
    assert response.status_code == 400
    assert response.json is not None and detail in response.json["detail"]


class BrokenStream(io.RawIOBase):
    """A request stream whose framing breaks after the first bytes, as a server reports it."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.sent:
            raise OSError("Invalid chunk header")
        self.sent = True
        buffer[:2] = b'{"'
        return 2


def test_a_body_the_server_cannot_read_is_400_without_a_traceback(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.post(
        f"/yalgaar/{TOKEN}/presence",
        environ_overrides={"wsgi.input": BrokenStream(), "wsgi.input_terminated": True},
        headers={"Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["detail"].startswith("The request body could not be read (OSError)")
    assert not [r for r in caplog.records if r.exc_info or r.levelname in ("ERROR", "CRITICAL")]
