"""Realistic Yalgaar envelopes for the benchmarks: the doc's shape, plausible values.

Yalgaar sends a batch every 2 seconds with timestamps in whole seconds, so the items of one
body share a few timestamps: here 100 items per second. ``distinct_timestamps=True`` gives every
item a timestamp of its own instead (a worst case no real batch reaches). Every body is
deterministic, so two runs measure the same bytes.
"""

from __future__ import annotations

import json

__all__ = ["CLIENT_KEY", "KINDS", "URL_TOKEN", "body", "body_of_size"]

#: The key the benchmark receivers accept; a made-up one in Yalgaar's format.
CLIENT_KEY = "ck-0123456789abcdef"

#: The secret URL segment of the benchmark receivers (the set-up docs/security.md recommends).
URL_TOKEN = "bench-0123456789abcdef0123456789abcdef"

KINDS = ("presence", "message")

_ACTIONS = ("bind", "unbind")


#: Events per second of the stream the bodies are cut from.
EVENTS_PER_SECOND = 100


def _item(kind: str, n: int, distinct_timestamps: bool) -> dict[str, str]:
    second = n if distinct_timestamps else n // EVENTS_PER_SECOND
    item = {
        "channel": f"orders-{n % 50}",
        "uuid": f"member-{100_000 + n}",
        "timestamp": str(1_764_340_000 + second),
    }
    if kind == "presence":
        item["action"] = _ACTIONS[n % 2]
    else:
        # Yalgaar's SDKs publish strings; real publishers send JSON text.
        item["message"] = json.dumps(
            {"order": 50_000 + n, "status": "paid", "amount": n * 3 % 997, "currency": "EUR"}
        )
    return item


def envelope(kind: str, items: int, *, distinct_timestamps: bool = False) -> dict[str, object]:
    """``{"items": {"source", "clientKey", "data"}}`` with ``items`` data items."""
    source = "Presence" if kind == "presence" else "Message"
    return {
        "items": {
            "source": source,
            "clientKey": CLIENT_KEY,
            "data": [_item(kind, n, distinct_timestamps) for n in range(items)],
        }
    }


def body(kind: str, items: int, *, distinct_timestamps: bool = False) -> bytes:
    """The envelope as the bytes Yalgaar would POST."""
    data = envelope(kind, items, distinct_timestamps=distinct_timestamps)
    return json.dumps(data).encode("utf-8")


def body_of_size(kind: str, limit: int) -> tuple[bytes, int]:
    """The body with the most items that still fits in ``limit`` bytes, and its item count."""
    one = len(body(kind, 1))
    per_item = len(body(kind, 2)) - one
    count = max(1, (limit - one) // per_item + 1)
    data = body(kind, count)
    while len(data) > limit:
        count -= 1
        data = body(kind, count)
    return data, count
