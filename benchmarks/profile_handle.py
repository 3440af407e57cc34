"""Profile ``receiver.handle`` on one body with cProfile: where the time of a batch goes.

``python profile_handle.py [presence|message] [ITEMS] [--marshmallow]``; ``--marshmallow`` builds
the receiver with ``loader="marshmallow"`` (every envelope and item loaded by ``Schema.load``).
Used for ``docs/performance.md``; not part of ``make bench``.
"""

from __future__ import annotations

import cProfile
import pstats
import sys

import envelopes

from yalgaar_receiver import Event, Receiver


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else "presence"
    items = int(argv[1]) if len(argv) > 1 else 200
    loader = "marshmallow" if "--marshmallow" in argv else "derived"
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY], loader=loader)

    @receiver.on_event
    def handler(event: Event) -> None:
        pass

    body = envelopes.body(kind, items)
    for _ in range(20):
        receiver.handle(body)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(max(1, 20_000 // items)):
        receiver.handle(body)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main(sys.argv[1:])
