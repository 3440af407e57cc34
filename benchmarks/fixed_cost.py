"""The fixed cost of one request, in process: the floor's and the receivers' WSGI apps called.

The HTTP ratio of a one-item webhook is decided by what each request costs whatever its size, and
on a shared machine a round of ``wrk`` moves by several hundredths. This measures the same three
apps as measurement 1 (``apps.py``) without gunicorn, the kernel or the network, in two ways:

* **time**: microseconds per request, each app called with a fresh WSGI environ as gunicorn
  builds one, in interleaved rounds (the best round of each app);
* **instructions**: what ``valgrind --tool=cachegrind`` counts per request, from two runs of
  the same app, with and without the requests, so that start-up cancels out. The count repeats
  to the instruction when the same code runs the same way, whatever else the machine does, and
  moves by about 1% between set-ups (object addresses decide some dict lookups): it tells a
  real change from noise. It leaves out what the CPU's caches do, which the HTTP figures
  include.

``python fixed_cost.py [--instructions]`` prints the table; ``bench.py`` adds it to the report.
With ``--serve SIDE KIND COUNT`` it only makes the requests (what valgrind runs).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import apps
import envelopes

#: What each side is: the app, and the path a one-item body of ``kind`` is posted to.
SIDES: t.Final[dict[str, tuple[t.Callable[[], t.Any], str]]] = {
    "floor": (apps.make_floor, "/floor"),
    "receiver": (apps.make_receiver, "/yalgaar/{kind}"),
    "receiver+token": (
        lambda: apps.make_receiver(url_token=True),
        f"/yalgaar/{envelopes.URL_TOKEN}/{{kind}}",
    ),
}
#: Requests before any is measured or counted: imports, first-request set-up, warm caches.
WARM_UP: t.Final = 200
_I_REFS: t.Final = re.compile(r"I\s+refs:\s+([\d,]+)")


def _environ(path: str, body: bytes) -> dict[str, t.Any]:
    """What gunicorn hands the app for a POST of ``body`` from 127.0.0.1."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: t.Any = None) -> None:
    if not status.startswith(("200", "204")):
        raise RuntimeError(f"The app answered {status}")


def _requests(app: t.Any, path: str, body: bytes, count: int) -> float:
    """Make ``count`` requests; the seconds they took."""
    started = time.perf_counter()
    for _ in range(count):
        answer = app(_environ(path, body), _start_response)
        for _chunk in answer:
            pass
        answer.close()
    return time.perf_counter() - started


def _app(side: str, kind: str) -> tuple[t.Any, str, bytes]:
    make, route = SIDES[side]
    return make(), route.format(kind=kind), envelopes.body(kind, 1)


def microseconds(kind: str, rounds: int = 9, count: int = 2000) -> dict[str, float]:
    """Microseconds per request of each side, the best of ``rounds`` interleaved rounds."""
    loaded = {side: _app(side, kind) for side in SIDES}
    for app, path, body in loaded.values():
        _requests(app, path, body, WARM_UP)
    best = dict.fromkeys(SIDES, float("inf"))
    for _ in range(rounds):
        for side, (app, path, body) in loaded.items():
            best[side] = min(best[side], _requests(app, path, body, count) / count * 1e6)
    return best


def _count(side: str, kind: str, requests: int) -> int:
    """Instructions valgrind counts for a process that makes ``requests`` requests."""
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--serve", side, kind, str(requests),
    ]  # fmt: skip
    # A fixed hash seed: the same dict layouts, so the same count on every run.
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=True, env=environment
    )
    found = _I_REFS.search(result.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no instruction count:\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def instructions(kind: str, count: int = 1000) -> dict[str, float] | None:
    """Instructions per request of each side; ``None`` without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    jobs = [(side, n) for side in SIDES for n in (0, count)]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        counts = pool.map(lambda job: _count(job[0], kind, job[1]), jobs)
        counted = dict(zip(jobs, counts, strict=True))
    return {side: (counted[(side, count)] - counted[(side, 0)]) / count for side in SIDES}


def table(
    kinds: t.Sequence[str], with_instructions: bool, rounds: int = 9
) -> list[tuple[object, ...]]:
    """One row per envelope kind and side: time and instructions, and their extra and ratio."""
    rows: list[tuple[object, ...]] = []
    for kind in kinds:
        times = microseconds(kind, rounds)
        counts = instructions(kind) if with_instructions else None
        for side in SIDES:
            row: list[object] = [kind, side, f"{times[side]:.1f}"]
            row += ["", ""] if side == "floor" else [
                f"+{times[side] - times['floor']:.1f}", f"{times['floor'] / times[side]:.3f}"
            ]  # fmt: skip
            if counts is None:
                row += ["not counted (no valgrind)", "", ""]
            else:
                row.append(f"{counts[side]:,.0f}")
                row += ["", ""] if side == "floor" else [
                    f"+{counts[side] - counts['floor']:,.0f}",
                    f"{counts['floor'] / counts[side]:.3f}",
                ]  # fmt: skip
            rows.append(tuple(row))
    return rows


HEADER: t.Final = (
    "envelope", "app", "µs/request", "over the floor", "floor / app",
    "instructions/request", "over the floor", "floor / app",
)  # fmt: skip


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", action="store_true", help="also count with valgrind")
    parser.add_argument(
        "--serve", nargs=3, metavar=("SIDE", "KIND", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        side, kind, count = args.serve
        app, path, body = _app(side, kind)
        _requests(app, path, body, WARM_UP + int(count))
        return 0
    print("| " + " | ".join(HEADER) + " |")
    for row in table(envelopes.KINDS, args.instructions):
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
