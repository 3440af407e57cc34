"""Known-answer vectors for the message encryption, made by the official SDK's own code.

``python -m tests.messages.make_vectors`` (from the repository root) writes
``tests/messages/sdk_vectors.json``; :func:`vectors` is what the tests compare that file with.
The SDK (``sdk/pyyalgaar_encrypt.py``, see ``sdk/README.md``) takes a key of exactly 16, 24 or
32 characters; the JavaScript SDKs pad a shorter key with "0", so the vectors for short keys are
made by the SDK with the key padded that way.
"""

from __future__ import annotations

import importlib.util
import json
import typing as t
from pathlib import Path

HERE = Path(__file__).parent
SDK = HERE / "sdk" / "pyyalgaar_encrypt.py"
VECTORS = HERE / "sdk_vectors.json"

#: The keys: one per AES size, as the Python SDK takes them, then short ones as the JavaScript
#: SDKs take them.
KEYS = [
    "0123456789abcdef",
    "0123456789abcdefGHIJKLMN",
    "0123456789abcdefGHIJKLMNopqrstuv",
    "secret",
    "a-key-of-twenty-char",
    "a-key-of-thirty-characters-xy",
]

#: The texts: short, JSON, exactly one block (a whole block of padding), two blocks, long, and
#: non-ASCII text whose UTF-8 the SDK can pad (its extra bytes add up to whole blocks).
TEXTS = [
    "hello",
    '{"id":7,"items":["tea","cake"]}',
    "sixteen chars!!!",
    "thirty-two characters of text!!!",
    "A longer message, as a chat app would publish it: several blocks, and a comma or two.",
    "\u00e9" * 16,
]

#: Texts the SDK cannot encrypt: it pads by characters, so their UTF-8 is not whole blocks.
REFUSED = ["caf\u00e9", "\u65e5\u672c\u8a9e"]


def load_sdk() -> t.Any:
    """The SDK's ``encrypt`` module, run from the vendored file."""
    spec = importlib.util.spec_from_file_location("pyyalgaar_encrypt", SDK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def js_padded(key: str) -> str:
    """A key as the JavaScript SDKs pad it: "0" up to 16, 24 or 32 characters."""
    size = next(size for size in (16, 24, 32) if len(key) <= size)
    return key + "0" * (size - len(key))


def vectors() -> dict[str, t.Any]:
    """Every key with every text, encrypted by the SDK, and what the SDK refuses."""
    sdk = load_sdk()
    found: list[dict[str, str]] = []
    refused: list[dict[str, str]] = []
    for key in KEYS:
        cipher = sdk.AESCipher(js_padded(key))
        for text in TEXTS:
            ciphertext = cipher.encrypt(text).decode("ascii")
            assert cipher.decrypt(ciphertext) == text
            found.append(
                {"key": key, "sdk_key": js_padded(key), "text": text, "ciphertext": ciphertext}
            )
        for text in REFUSED:
            try:
                cipher.encrypt(text)
            except ValueError:  # "Data must be padded to 16 byte boundary in CBC mode"
                refused.append({"key": key, "text": text})
            else:
                raise AssertionError(f"the SDK encrypted {text!r}, expected a refusal")
    return {"source": "pyYalgaar 1.0.6 encrypt.py", "vectors": found, "refused": refused}


def main() -> None:
    VECTORS.write_text(json.dumps(vectors(), indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"Wrote {VECTORS}")


if __name__ == "__main__":
    main()
