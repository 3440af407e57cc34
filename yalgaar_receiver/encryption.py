"""Encrypted messages: the AES scheme of Yalgaar's client SDKs, read and written as they do it.

A Yalgaar client can encrypt every message before publishing it, with a key the server never
has, so the Message webhook then carries ciphertext. The scheme, as the official Python SDK
(pyYalgaar 1.0.6, ``encrypt.py``) implements it:

* AES in CBC mode; the key is the key text's UTF-8 bytes, 16, 24 or 32 of them (AES-128, -192,
  -256), used as they are, with no key derivation;
* the IV is the first 16 bytes of the key, so the same text always gives the same ciphertext;
* the text's UTF-8 bytes are padded to a whole number of 16-byte blocks PKCS#7-style (``n``
  bytes of value ``n``), and the ciphertext is sent as base64 text.

The JavaScript SDKs pad a key shorter than the next valid length with ``"0"`` characters, so
"secret" works as "secret0000000000"; :class:`MessageKeys` pads the same way, which changes no
key the Python SDK accepts. The Python SDK pads by characters, not bytes, so it cannot encrypt
most non-ASCII text (its AES call refuses the length) and encrypts the rest as the byte padding
here does; :meth:`MessageKeys.encrypt` pads by bytes, which the SDK's own decryption reads.

There is no MAC: a wrong key is noticed because the padding or the UTF-8 comes out wrong, and
nothing proves who encrypted a message (every client app holds the key). ``docs/payloads.md``
has the threat model.

Imports: the standard library, and ``cryptography`` (the ``crypto`` extra) when keys are given.
"""

from __future__ import annotations

import base64
import binascii
import typing as t

from . import settings, wire
from ._extras import install
from .exceptions import ConfigurationError

__all__ = ["KEY_SIZES", "UNDECRYPTABLE", "MessageKeys"]

#: The key lengths AES takes, in bytes; a shorter key is padded with "0" up to the next one.
KEY_SIZES: t.Final = (16, 24, 32)

#: What a receiver with message keys does with a message none of them decrypts:
#: ``"reject"`` it as an item, or ``"deliver"`` it as it came (what the SDK does).
UNDECRYPTABLE: t.Final = ("reject", "deliver")

_BLOCK: t.Final = 16
_EXTRA: t.Final = install("crypto")


class MessageKeys:
    """The keys messages may be encrypted with, tried in the order given (for rotation).

    The ``repr`` shows how many keys there are, never a key.

    :param keys: the AES keys as the publishers' SDKs were given them.
    :raises ConfigurationError: no key, a key longer than 32 bytes, or ``cryptography`` is not
        installed.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: t.Iterable[str]) -> None:
        texts = settings.text_list(keys, "message_keys", item="key", refuse_text=True, trim=False)
        if not texts:
            raise ConfigurationError("message_keys holds no key; give one, or leave it unset.")
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        except ModuleNotFoundError:
            raise ConfigurationError(
                f"message_keys needs the cryptography package; install the extra: {_EXTRA}"
            ) from None
        ciphers = []
        for position, text in enumerate(texts):
            key = _padded(text, position)
            ciphers.append(Cipher(algorithms.AES(key), modes.CBC(key[:_BLOCK])))
        self._keys = tuple(ciphers)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<MessageKeys count={len(self._keys)}>"

    def decrypt(self, text: str) -> str:
        """The text that ``text`` (base64 ciphertext) was encrypted from, with the first key
        that gives valid padding and UTF-8 text that follows the rules of a message.

        :raises ValueError: it is not base64, not whole AES blocks, or no key decrypts it. The
            message names the reason only: never a key, never what a key made of it.
        """
        try:
            data = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("The message is not base64 text, so it is not encrypted.") from None
        if not data or len(data) % _BLOCK:
            raise ValueError(
                f"The message decodes to {len(data)} bytes, not whole 16-byte AES blocks, so it "
                "is not encrypted, or it was cut short."
            )
        for cipher in self._keys:
            decryptor = cipher.decryptor()
            padded = decryptor.update(data) + decryptor.finalize()
            size = padded[-1]
            if not 1 <= size <= _BLOCK or padded[-size:] != bytes([size]) * size:
                continue  # another key's message, or not encrypted at all
            try:
                plain = padded[:-size].decode("utf-8")
            except UnicodeDecodeError:
                continue
            try:
                return wire.read_message(plain)
            except ValueError:
                continue
        count = len(self._keys)
        raise ValueError(
            f"None of the {count} message key(s) decrypts the message: it was encrypted with "
            "another key, or it is not encrypted."
            if count > 1
            else "The message key does not decrypt the message: it was encrypted with another "
            "key, or it is not encrypted."
        )

    def encrypt(self, text: str) -> str:
        """``text`` encrypted with the first key, as base64 text, as a publisher would send it."""
        data = text.encode("utf-8")
        size = _BLOCK - len(data) % _BLOCK
        encryptor = self._keys[0].encryptor()
        sealed = encryptor.update(data + bytes([size]) * size) + encryptor.finalize()
        return base64.b64encode(sealed).decode("ascii")


def _padded(text: str, position: int) -> bytes:
    """The AES key of a key text: its UTF-8 bytes, padded with "0" to the next valid length as
    the JavaScript SDKs do."""
    try:
        key = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"message_keys[{position}] holds a lone surrogate; a key is Unicode text."
        ) from None
    for size in KEY_SIZES:
        if len(key) <= size:
            return key + b"0" * (size - len(key))
    raise ConfigurationError(
        f"message_keys[{position}] is {len(key)} bytes long; an AES key has at most 32 "
        "(16, 24 or 32; a shorter key is padded with '0' as Yalgaar's JavaScript SDKs do)."
    )
