"""Peak RSS growth while one receiver handles one large body; run in a fresh process.

Run by ``bench.py`` as ``python memory_probe.py KIND BODY_FILE``; prints one JSON object. A
process of its own so that nothing a benchmark did before (arenas, caches) hides or inflates the
growth. The body is read from a file that the caller wrote, because building it here would raise
the peak above anything handling it does. The probe imports, reads the body, handles one small
body, then resets the peak RSS to the current RSS, handles the large body once and reads the
peak. Linux only (``/proc``).
"""

from __future__ import annotations

import json
import sys

import envelopes

from yalgaar_receiver import Event, Receiver


def _rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from ``/proc``, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    # Writing 5 to clear_refs sets VmHWM back to the current RSS (Linux 4.0 and later). The
    # peak is per process image, unlike ru_maxrss, which a child started with fork and exec
    # inherits from its parent.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def main(kind: str, path: str) -> None:
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY])
    seen = [0]

    @receiver.on_event
    def count(event: Event) -> None:
        seen[0] += 1

    with open(path, "rb") as file:
        body = file.read()
    receiver.handle(envelopes.body(kind, 10))
    _reset_peak()
    before = _rss_kib("VmRSS")
    outcome = receiver.handle(body)
    after = _rss_kib("VmHWM")
    items = len(outcome.accepted)
    assert items > 0 and not outcome.rejected
    assert seen[0] == items + 10  # the handler ran for every event, warm-up included
    print(
        json.dumps(
            {
                "kind": kind,
                "body_bytes": len(body),
                "items": items,
                "rss_before_kib": before,
                "peak_during_kib": after,
                "growth_mib": (after - before) / 1024,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
