"""Encrypted messages: the official SDK's ciphertexts decrypted, every bad input an item-level
outcome, and no key or plaintext in any message or log line."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import typing as t

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Flask

from yalgaar_receiver import ConfigurationError, MessageEvent, Receiver, create_blueprint
from yalgaar_receiver.delivery.serialization import dumps, loads
from yalgaar_receiver.encryption import KEY_SIZES, MessageKeys
from yalgaar_receiver.testing import capture_events, message, message_envelope

from . import make_vectors

KEY = "ck-0123456789abcdef"
VECTORS: list[dict[str, str]] = json.loads(make_vectors.VECTORS.read_text("utf-8"))["vectors"]
AES_KEY = "0123456789abcdef"


def vector_id(vector: dict[str, str]) -> str:
    return f"{len(vector['sdk_key'])}-byte key {vector['key']!r}, {len(vector['text'])} chars"


def raw_encrypt(key: str, data: bytes) -> str:
    """AES-CBC of exactly ``data`` (no padding added) with the scheme's key and IV."""
    sealed = Cipher(algorithms.AES(key.encode()), modes.CBC(key.encode()[:16])).encryptor()
    return base64.b64encode(sealed.update(data) + sealed.finalize()).decode()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def sdk() -> t.Any:
    """The official SDK's encrypt module; pycryptodome is a dev dependency."""
    try:
        import Crypto  # noqa: F401
    except ModuleNotFoundError:
        if in_ci():
            pytest.fail("pycryptodome is missing; the dev extra installs it")
        pytest.skip("pycryptodome is not installed (pip install -e '.[dev]')")
    return make_vectors.load_sdk()


# -- the SDK's own ciphertexts ------------------------------------------------------------------


def test_the_vendored_sdk_file_is_the_released_one() -> None:
    # The hash the pyYalgaar 1.0.6 wheel's RECORD gives for encrypt.py.
    digest = hashlib.sha256(make_vectors.SDK.read_bytes()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=") == (
        b"OFbmkKVlamMx8w0bjuZqA-qX3y2GeNmAmzUJofr60Zs"
    )


def test_the_vectors_are_what_the_sdk_s_code_makes() -> None:
    sdk()
    assert make_vectors.vectors() == json.loads(make_vectors.VECTORS.read_text("utf-8"))


def test_the_vectors_cover_every_key_size_and_the_javascript_padding() -> None:
    assert {len(v["sdk_key"]) for v in VECTORS} == set(KEY_SIZES)
    assert {v["key"] for v in VECTORS if v["key"] != v["sdk_key"]} == {
        "secret",
        "a-key-of-twenty-char",
        "a-key-of-thirty-characters-xy",
    }


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
def test_each_sdk_ciphertext_decrypts_and_encrypts_back(vector: dict[str, str]) -> None:
    keys = MessageKeys([vector["key"]])  # as configured: a short key is padded as JS does
    assert keys.decrypt(vector["ciphertext"]) == vector["text"]
    assert keys.encrypt(vector["text"]) == vector["ciphertext"]  # the IV is fixed: same bytes


def test_text_the_sdk_cannot_encrypt_is_encrypted_so_that_the_sdk_reads_it() -> None:
    module = sdk()
    refused = json.loads(make_vectors.VECTORS.read_text("utf-8"))["refused"]
    assert {r["text"] for r in refused} == {"caf\u00e9", "\u65e5\u672c\u8a9e"}
    for entry in refused:
        padded = make_vectors.js_padded(entry["key"])
        ciphertext = MessageKeys([entry["key"]]).encrypt(entry["text"])
        assert module.AESCipher(padded).decrypt(ciphertext) == entry["text"]
        assert MessageKeys([entry["key"]]).decrypt(ciphertext) == entry["text"]


def test_rotation_tries_every_key_in_order() -> None:
    old, new = VECTORS[0], next(v for v in VECTORS if len(v["sdk_key"]) == 32)
    keys = MessageKeys([new["key"], old["key"]])
    assert keys.decrypt(old["ciphertext"]) == old["text"]
    assert keys.decrypt(new["ciphertext"]) == new["text"]
    assert keys.encrypt("x") == MessageKeys([new["key"]]).encrypt("x")  # the first key writes


# -- what does not decrypt ----------------------------------------------------------------------

GOOD = MessageKeys([AES_KEY]).encrypt("the secret plan, in two blocks")


CASES = {
    "wrong key": (MessageKeys(["another-key-0123"]).encrypt("hi"), "does not decrypt"),
    "truncated text": (GOOD[:-4], "not base64|not whole"),
    "last block cut": (base64.b64encode(base64.b64decode(GOOD)[:-16]).decode(), "not decrypt"),
    "cut mid block": (base64.b64encode(base64.b64decode(GOOD)[:-3]).decode(), "not whole 16"),
    "padding of 0": (raw_encrypt(AES_KEY, b"fifteen bytes..\x00"), "does not decrypt"),
    "padding not repeated": (raw_encrypt(AES_KEY, b"fifteen bytes.\x03\x02"), "not decrypt"),
    "not UTF-8": (raw_encrypt(AES_KEY, b"\xff\xfe" + b"x" * 11 + b"\x03" * 3), "not decrypt"),
    "not base64": ("not base64 at all!", "not base64"),
    "plain JSON": ('{"id": 7}', "not base64"),
    "empty": ("", "not base64|not whole"),
}


@pytest.mark.parametrize(("ciphertext", "reason"), CASES.values(), ids=CASES.keys())
def test_what_does_not_decrypt_says_why_and_never_the_key(ciphertext: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        MessageKeys([AES_KEY]).decrypt(ciphertext)
    assert AES_KEY not in str(caught.value)


def test_several_keys_are_counted_not_named() -> None:
    with pytest.raises(ValueError, match="None of the 2 message key") as caught:
        MessageKeys([AES_KEY, "another-key-0123"]).decrypt(MessageKeys(["third"]).encrypt("x"))
    assert "another-key" not in str(caught.value)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "holds no key"),
        ("0123456789abcdef", "must be a list"),
        ([""], "empty key"),
        ([" "], "empty key"),
        ([7], "must hold strings"),
        (["x" * 33], "33 bytes long; an AES key has at most 32"),
        (["\ud800"], "lone surrogate"),
    ],
)
def test_keys_that_cannot_work_fail_at_start_up(keys: t.Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MessageKeys(keys)
    with pytest.raises(ConfigurationError, match=message):
        Receiver([KEY], message_keys=keys)


def test_a_key_is_used_exactly_as_given() -> None:
    spaced = MessageKeys([" key with spaces "])
    assert spaced.decrypt(spaced.encrypt("x")) == "x"
    with pytest.raises(ValueError):
        MessageKeys(["key with spaces"]).decrypt(spaced.encrypt("x"))


def test_the_repr_counts_keys() -> None:
    assert repr(MessageKeys([AES_KEY, "other"])) == "<MessageKeys count=2>"
    assert AES_KEY not in repr(Receiver([KEY], message_keys=[AES_KEY]).parser.message_keys)


def test_without_cryptography_the_error_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "cryptography":
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Blocked())
        from yalgaar_receiver import ConfigurationError, Receiver
        Receiver(["ck-1"])  # works: only message_keys needs it
        try:
            Receiver(["ck-1"], message_keys=["0123456789abcdef"])
        except ConfigurationError as error:
            print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'yalgaar-receiver[crypto]'" in done.stdout


# -- through the receiver -----------------------------------------------------------------------


def body(*texts: str) -> bytes:
    items = [message("secret-room", f"u{n}", text) for n, text in enumerate(texts)]
    return message_envelope(*items, client_key=KEY).to_bytes()


def test_decrypted_messages_reach_handlers_and_bad_ones_are_rejected_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver([KEY], message_keys=[AES_KEY])
    seen: list[MessageEvent] = []
    receiver.on_message(seen.append)

    @receiver.on_message
    def broken(event: MessageEvent) -> None:
        raise RuntimeError("the handler's log line shows the event")

    secret = MessageKeys([AES_KEY]).encrypt('{"plan":"attack at dawn"}')
    with capture_events(receiver) as capture:
        outcome = receiver.handle(body(secret, "plain text", GOOD[:-4]))
    [event] = seen
    assert (event.message, event.encrypted, event.raw["message"]) == (
        '{"plan":"attack at dawn"}',
        True,
        secret,
    )
    assert event.json() == {"plan": "attack at dawn"}
    assert [(r.index, list(r.errors)) for r in outcome.rejected] == [
        (1, ["message"]),
        (2, ["message"]),
    ]
    assert "not base64" in outcome.rejected[0].errors["message"][0]
    assert capture.rejections == list(outcome.rejected)
    assert "the handler's log line shows the event" in caplog.text
    assert "message=<25 characters, decrypted>" in caplog.text
    for leak in (AES_KEY, "attack at dawn", "the secret plan"):
        assert leak not in caplog.text


def test_deliver_passes_what_does_not_decrypt_as_it_came() -> None:
    receiver = Receiver([KEY], message_keys=[AES_KEY], undecryptable="deliver")
    seen: list[MessageEvent] = []
    receiver.on_message(seen.append)
    outcome = receiver.handle(body(GOOD, "plain text"))
    assert outcome.rejected == ()
    assert [(e.message, e.encrypted) for e in seen] == [
        ("the secret plan, in two blocks", True),
        ("plain text", False),
    ]


def test_undecryptable_must_be_a_known_choice() -> None:
    with pytest.raises(ConfigurationError, match="undecryptable must be one of"):
        Receiver([KEY], message_keys=[AES_KEY], undecryptable="drop")


def test_the_encrypted_flag_crosses_a_queue() -> None:
    receiver = Receiver([KEY], message_keys=[AES_KEY])
    [event] = receiver.handle(body(GOOD)).accepted
    assert isinstance(event, MessageEvent) and event.encrypted
    again = loads(dumps(event))
    assert again == event and isinstance(again, MessageEvent) and again.encrypted
    plain = loads(dumps(Receiver([KEY]).handle(body("hi")).accepted[0]))
    assert isinstance(plain, MessageEvent) and not plain.encrypted
    assert '"encrypted"' not in dumps(plain)  # absent reads as false: older readers are fine


@pytest.mark.parametrize("size", KEY_SIZES)
def test_a_flask_app_decrypts_the_sdk_s_ciphertexts_for_each_key_size(size: int) -> None:
    vectors = [v for v in VECTORS if len(v["sdk_key"]) == size]
    keys = sorted({v["key"] for v in vectors})
    receiver = Receiver([KEY], message_keys=keys)
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True
    app.register_blueprint(create_blueprint(receiver), url_prefix="/yalgaar")
    with capture_events(receiver) as capture:
        response = app.test_client().post(
            "/yalgaar/message", data=body(*(v["ciphertext"] for v in vectors))
        )
    assert response.status_code == 200, response.data
    assert response.json == {"accepted": len(vectors), "rejected": [], "failed": 0}
    assert [e.message for e in capture.of_type(MessageEvent)] == [v["text"] for v in vectors]


def test_the_test_kit_encrypts_as_a_publisher_does() -> None:
    item = message("c", "u", {"id": 1}, encrypt_key=AES_KEY)
    assert item["message"] == MessageKeys([AES_KEY]).encrypt('{"id":1}')
    [event] = (
        Receiver([KEY], message_keys=[AES_KEY])
        .handle(message_envelope(item, client_key=KEY).to_bytes())
        .accepted
    )
    assert isinstance(event, MessageEvent) and event.json() == {"id": 1}
