"""``make bench``: the receiver held against the bare-Flask floor, as ratios from one run.

Six measurements (see ``docs/performance.md`` for what they mean and why):

1. HTTP floor ratio: gunicorn (1 sync worker, then 2) serving a bare Flask view that parses the
   JSON and answers 204, and the real blueprint; ``wrk`` drives both on 127.0.0.1, alternating
   floor and receiver runs, for 1- and 200-item presence and message envelopes.
2. Per-item cost in process, for 1, 200 and 1000 items: ``json.loads`` alone,
   ``parse_envelope`` and ``receiver.handle`` with one handler, as microseconds per item and as
   a multiple of ``json.loads`` on the same body.
3. Growth (per-item cost at 1000 items over 200 items) and the peak RSS growth while handling a
   body at ``max_body_bytes``, in a fresh process.
4. Ack latency with the background dispatcher, when the package has one.
5. The fixed cost of one request in process, in microseconds and in instructions counted by
   valgrind, for the apps of measurement 1 (``fixed_cost.py``).
6. Throughput end to end: 200-item envelopes through gunicorn, Celery and Redis with
   de-duplication and presence, per-event and per-envelope, beside bare Celery tasks, with CPU
   per event of each process type (``throughput.py``).

Absolute figures are context only: the machine is shared. Every target is a ratio of two figures
taken in this one run. The figures go to stdout and, with ``--out``, to a Markdown file.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import functools
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import apps
import envelopes
import fixed_cost as fixed_cost_module
import throughput
from flask import Flask
from processes import GunicornServer, gunicorn

from yalgaar_receiver import Event, Receiver, create_blueprint, parse_envelope
from yalgaar_receiver.flask.blueprint import DEFAULT_MAX_BODY_BYTES
from yalgaar_receiver.parsing import Parser

HERE = Path(__file__).resolve().parent
TOKEN = envelopes.URL_TOKEN
ITEM_COUNTS = (1, 200, 1000)
HTTP_ITEMS = (1, 200)
WORKERS = (1, 2)
#: Rounds per envelope size: more for the one-item bodies, whose ratio is a target.
ROUNDS = {1: 10, 200: 2}


# -- output ------------------------------------------------------------------------------------


@dataclass
class Report:
    """Lines for the terminal and the Markdown file, and one line per target."""

    lines: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    contexts: list[tuple[str, str, str]] = field(default_factory=list)

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def table(self, header: t.Sequence[str], rows: t.Iterable[t.Sequence[object]]) -> None:
        self.say("| " + " | ".join(header) + " |")
        self.say("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.say("| " + " | ".join(str(cell) for cell in row) + " |")
        self.say()

    def target(self, name: str, figure: str, goal: str, met: bool | None) -> None:
        self.targets.append((name, figure, goal, met))

    def context(self, name: str, figure: str, note: str) -> None:
        """A figure reported beside the targets, which no target holds."""
        self.contexts.append((name, figure, note))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    names = ("yalgaar-receiver", "flask", "werkzeug", "marshmallow", "blinker", "gunicorn")
    for name in (*names, "celery", "redis"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    wrk = shutil.which("wrk")
    if wrk:
        # wrk prints its version in the first line of its usage text.
        text = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        found["wrk"] = text.split(" [")[0].removeprefix("wrk ").strip() or "unknown"
    server = shutil.which("redis-server")
    if server:
        text = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
        version = [part for part in text.split() if part.startswith("v=")]
        found["redis-server"] = version[0].removeprefix("v=") if version else "unknown"
    return found


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# -- 2 and 3: in process -----------------------------------------------------------------------


def _best_per_call(funcs: t.Sequence[t.Callable[[], object]], samples: int) -> list[float]:
    """The fastest time per call of each function, over interleaved samples of ~5 ms each.

    Interleaving puts every function through the same bursts of load from the other users of
    the machine; the minimum is the figure least disturbed by them.
    """
    loops = []
    for func in funcs:
        func()
        start = time.perf_counter()
        func()
        once = max(time.perf_counter() - start, 1e-7)
        loops.append(max(1, math.ceil(0.005 / once)))
    best = [math.inf] * len(funcs)
    for _ in range(samples):
        for position, (func, count) in enumerate(zip(funcs, loops, strict=True)):
            start = time.perf_counter()
            for _ in range(count):
                func()
            best[position] = min(best[position], (time.perf_counter() - start) / count)
    return best


#: ``parse_envelope`` with every envelope and item loaded by ``Schema.load`` alone: the switch
#: the receiver itself reads (``Receiver(loader="marshmallow")``). tests/core/test_loader.py
#: fails when it stops changing which code runs.
MARSHMALLOW_ALONE: t.Final = Parser(loader="marshmallow")
assert not MARSHMALLOW_ALONE.derived and Parser().derived


def _one_handler_receiver(loader: str = "derived") -> Receiver:
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY], loader=loader)

    @receiver.on_event
    def handler(event: Event) -> None:
        """Does nothing, so that the figure is the receiver's own."""

    return receiver


def in_process(report: Report, samples: int) -> None:
    report.say("## 2. Per-item cost in process")
    report.say()
    report.say(
        f"Best of {samples} interleaved samples of about 5 ms each; `handle` runs one "
        "`on_event` handler. Multiples are of `json.loads` on the same body."
    )
    report.say()
    receiver = _one_handler_receiver()
    rows: list[tuple[object, ...]] = []
    per_item: dict[tuple[str, str, int], float] = {}
    cases = [(kind, n, False) for kind in envelopes.KINDS for n in ITEM_COUNTS]
    cases += [(kind, 200, True) for kind in envelopes.KINDS]
    for kind, n, distinct in cases:
        body = envelopes.body(kind, n, distinct_timestamps=distinct)
        assert len(receiver.handle(body).accepted) == n
        loads, parse, handle = _best_per_call(
            [
                functools.partial(json.loads, body),
                functools.partial(parse_envelope, body),
                functools.partial(receiver.handle, body),
            ],
            samples,
        )
        label = f"{kind}, {n}" + (" (every timestamp distinct)" if distinct else "")
        if not distinct:
            per_item[(kind, "parse", n)] = parse / n
            per_item[(kind, "handle", n)] = handle / n
            per_item[(kind, "loads", n)] = loads / n
        rows.append(
            (
                label,
                f"{loads / n * 1e6:.2f}",
                f"{parse / n * 1e6:.2f}",
                f"{parse / loads:.2f}x",
                f"{handle / n * 1e6:.2f}",
                f"{handle / loads:.2f}x",
            )
        )
    report.table(
        (
            "envelope, items",
            "json.loads µs/item",
            "parse_envelope µs/item",
            "parse / loads",
            "handle µs/item",
            "handle / loads",
        ),
        rows,
    )
    for kind in envelopes.KINDS:
        loads = per_item[(kind, "loads", 200)]
        parse = per_item[(kind, "parse", 200)] / loads
        handle = per_item[(kind, "handle", 200)] / loads
        report.target(f"parse + validate + events / json.loads, {kind}, 200 items",
                      f"{parse:.2f}x", "at most 6x", parse <= 6)  # fmt: skip
        report.target(f"receiver.handle (one handler) / json.loads, {kind}, 200 items",
                      f"{handle:.2f}x", "at most 8x", handle <= 8)  # fmt: skip

    # The same handle with metrics and traces on: what the instruments cost per item, and
    # what each of the two costs alone.
    rows = []
    switches = {"metrics": (True, False), "traces": (False, True), "both": (True, True)}
    instrumented: dict[str, Receiver] = {}
    opened: list[t.Any] = []
    for name, (counting, tracing) in switches.items():
        instrumented[name] = _one_handler_receiver()
        made = apps.instrument(instrumented[name], metrics=counting, traces=tracing)
        opened += [instruments for instruments in made[:2] if instruments is not None]
    for kind in envelopes.KINDS:
        body = envelopes.body(kind, 200)
        plain, *each = _best_per_call(
            [functools.partial(receiver.handle, body)]
            + [functools.partial(r.handle, body) for r in instrumented.values()],
            max(3, samples // 2),
        )
        rows.append((f"{kind}, 200", f"{plain / 200 * 1e6:.2f}",
                     *(f"{cost / 200 * 1e6:.2f}" for cost in each),
                     *(f"{cost / plain:.2f}x" for cost in each)))  # fmt: skip
        both = each[-1]
        report.target(f"receiver.handle with metrics and traces / without, {kind}, 200 items",
                      f"{both / plain:.2f}x", "at most 1.3x", both / plain <= 1.3)  # fmt: skip
    for instruments in opened:
        instruments.close()  # the provider goes with the receiver
    report.say(
        "With the Prometheus metrics and OpenTelemetry traces of docs/observability.md on (an "
        "SDK tracer provider with no exporter: every span is made, none is sent), against the "
        "same receiver without them; each of the two alone, and both (the target). Called "
        "directly, `handle` has no request span around it, so each handler call's span is a "
        "root."
    )
    report.say()
    report.table(
        ("envelope, items", "handle µs/item", "metrics µs/item", "traces µs/item",
         "both µs/item", "metrics / plain", "traces / plain", "both / plain"),
        rows,
    )  # fmt: skip

    # The same parse and handle through marshmallow alone: what the derived loader saves.
    rows = []
    slow_receiver = _one_handler_receiver("marshmallow")
    for kind in envelopes.KINDS:
        body = envelopes.body(kind, 200)
        loads, slow, slow_handle = _best_per_call(
            [
                functools.partial(json.loads, body),
                functools.partial(MARSHMALLOW_ALONE.parse, body),
                functools.partial(slow_receiver.handle, body),
            ],
            max(3, samples // 4),
        )
        rows.append(
            (
                f"{kind}, 200",
                f"{slow / 200 * 1e6:.2f}",
                f"{slow / loads:.2f}x",
                f"{slow_handle / 200 * 1e6:.2f}",
                f"{slow_handle / loads:.2f}x",
            )
        )
        report.context(f"marshmallow alone: parse / json.loads, {kind}, 200 items",
                    f"{slow / loads:.2f}x", "Receiver(loader=\"marshmallow\")")  # fmt: skip
    report.say(
        "For scale, the same bodies with every envelope and item loaded by `Schema.load` "
        'alone (`Receiver(loader="marshmallow")`, the switch the receiver reads):'
    )
    report.say()
    report.table(
        ("envelope, items", "parse µs/item", "parse / loads", "handle µs/item", "handle / loads"),
        rows,
    )

    report.say("## 3. Growth and memory")
    report.say()
    rows = []
    for kind in envelopes.KINDS:
        for what in ("parse", "handle"):
            growth = per_item[(kind, what, 1000)] / per_item[(kind, what, 200)]
            rows.append((kind, what, f"{growth:.2f}"))
            report.target(f"per-item cost 1000 / 200 items, {kind}, {what}",
                          f"{growth:.2f}", "at most 1.2", growth <= 1.2)  # fmt: skip
    report.table(("envelope", "step", "per-item cost at 1000 / at 200 items"), rows)


def memory(report: Report) -> None:
    report.say(
        "Peak RSS growth while `handle` reads one body at the limits, in a fresh process "
        "(`memory_probe.py`):"
    )
    report.say()
    rows = []
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY])
    with tempfile.TemporaryDirectory(prefix="yalgaar-bench-") as directory:
        for kind in envelopes.KINDS:
            if kind == "presence":
                # Presence items are small, so max_items comes before max_body_bytes.
                body = envelopes.body(kind, receiver.max_items)
                what = f"max_items ({receiver.max_items} items)"
            else:
                body, count = envelopes.body_of_size(kind, DEFAULT_MAX_BODY_BYTES)
                what = f"max_body_bytes ({count} items)"
            path = Path(directory) / f"{kind}.json"
            path.write_bytes(body)
            result = subprocess.run(
                [sys.executable, str(HERE / "memory_probe.py"), kind, str(path)],
                capture_output=True,
                text=True,
                cwd=HERE,
                timeout=120,
                check=True,
            )
            probe = json.loads(result.stdout)
            growth = probe["growth_mib"]
            rows.append((kind, what, f"{len(body) / 2**20:.2f} MiB", f"{growth:.2f} MiB"))
            report.target(f"peak RSS growth, {kind} body of {len(body) / 2**20:.2f} MiB",
                          f"{growth:.2f} MiB", "at most 8 MiB", growth <= 8)  # fmt: skip
    report.table(("envelope", "body at", "body size", "peak RSS growth"), rows)


# -- 1: HTTP -----------------------------------------------------------------------------------


def _wrk(url: str, body_file: Path, seconds: float, connections: int) -> dict[str, int]:
    command = [
        "wrk", "--threads", "1", "--connections", str(connections),
        "--duration", f"{seconds:g}s", "--timeout", "5s",
        "--script", str(HERE / "post.lua"), url, "--", str(body_file),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    for line in result.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            figures: dict[str, int] = json.loads(line.removeprefix("WRK_RESULT "))
            return figures
    raise RuntimeError(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")


#: The servers measured, each against the floor: the receiver with the client key alone, and
#: with the URL token docs/security.md recommends.
RECEIVERS = {
    "receiver": ("apps:make_receiver()", "/yalgaar/{kind}"),
    "receiver+token": ("apps:make_receiver(url_token=True)", f"/yalgaar/{TOKEN}/{{kind}}"),
    "receiver+instruments": ("apps:make_receiver(instrumented=True)", "/yalgaar/{kind}"),
    "receiver+instruments-1%": (
        "apps:make_receiver(instrumented=True, sampled=0.01)",
        "/yalgaar/{kind}",
    ),
}
#: The least each side must reach against the floor, 1-item envelopes, 1 worker; the other
#: sides are reported beside them.
HTTP_TARGETS: t.Final = {"receiver": 0.90, "receiver+instruments": 0.85}


def http(report: Report, seconds: float) -> None:
    report.say("## 1. HTTP floor ratio")
    report.say()
    report.say(
        f"gunicorn sync workers on 127.0.0.1; `wrk -t1 -c(2 x workers) -d{seconds:g}s` POSTs "
        "the envelope with `Content-Type: application/json`. The floor is a bare Flask view "
        "(`request.get_json()`, 204). `receiver` is the blueprint with one no-op handler per "
        "event signal (`on_bind`, `on_unbind`, `on_presence`, `on_message`, `on_unknown`), "
        "answering its JSON summary, protected by the client key alone "
        "(`allow_client_key_only=True`): the target. "
        "`receiver+instruments` is the target receiver with the metrics and traces of "
        "docs/observability.md on (an SDK tracer provider with no exporter), a target too; "
        "`receiver+instruments-1%` the same with a sampler that keeps 1% of the traces "
        "(`ParentBased(TraceIdRatioBased(0.01))`), reported beside it. "
        "`receiver+token` is the target receiver with the secret URL token that docs/security.md "
        "recommends, reported beside it. Floor and receivers take turns, "
        + ", ".join(f"{ROUNDS[n]} rounds for {n}-item bodies" for n in HTTP_ITEMS)
        + ", after a "
        "2 s warm-up of each server: short runs that take turns often spread the other "
        "users' bursts of load over all sides. The figure per envelope is the median of the "
        "rounds' ratios to the floor (the ratio of the summed requests beside it). "
        "`CPU µs/req` is the user and system time the gunicorn workers spent per request "
        "(from /proc), and `CPU floor / app` its ratio, the floor's over the app's: time taken "
        "by other users of the machine does not count in it, so it moves less between rounds "
        "than requests per second do; it is context, the target is the req/s ratio."
    )
    report.say()
    rows: list[tuple[object, ...]] = []
    sides = ("floor", *RECEIVERS)
    with tempfile.TemporaryDirectory(prefix="yalgaar-bench-") as directory:
        bodies = {}
        for kind in envelopes.KINDS:
            for n in HTTP_ITEMS:
                path = Path(directory) / f"{kind}-{n}.json"
                path.write_bytes(envelopes.body(kind, n))
                bodies[(kind, n)] = path
        for workers in WORKERS:
            connections = 2 * workers
            with contextlib.ExitStack() as servers:
                floor = servers.enter_context(gunicorn("apps:make_floor()", workers))
                running = {"floor": floor}
                urls = {
                    "floor": {k: f"http://127.0.0.1:{floor.port}/floor" for k in envelopes.KINDS}
                }
                for side, (app, route) in RECEIVERS.items():
                    server = servers.enter_context(gunicorn(app, workers))
                    running[side] = server
                    urls[side] = {
                        k: f"http://127.0.0.1:{server.port}{route.format(kind=k)}"
                        for k in envelopes.KINDS
                    }
                for side in sides:  # warm up every server: imports, first requests
                    for kind in envelopes.KINDS:
                        _wrk(urls[side][kind], bodies[(kind, max(HTTP_ITEMS))], 1, connections)
                for kind in envelopes.KINDS:
                    for n in HTTP_ITEMS:
                        case = HttpCase(workers, kind, n, bodies[(kind, n)], seconds)
                        _http_case(report, rows, running, urls, case)
    report.table(
        ("workers", "envelope, items", "round", "app", "req/s", "p50 ms", "p99 ms",
         "errors", "CPU µs/req", "app / floor", "CPU floor / app"),
        rows,
    )  # fmt: skip


@dataclass(frozen=True)
class HttpCase:
    """One envelope driven through every server: how many workers, which body, how long."""

    workers: int
    kind: str
    items: int
    body: Path
    seconds: float


def _http_case(
    report: Report,
    rows: list[tuple[object, ...]],
    running: dict[str, GunicornServer],
    urls: dict[str, dict[str, str]],
    case: HttpCase,
) -> None:
    """Alternate the floor and every receiver on one envelope; add the rows and targets."""
    label = f"{case.kind}, {case.items}"
    totals = dict.fromkeys(urls, 0)
    ratios: dict[str, list[float]] = {side: [] for side in RECEIVERS}
    cpu_ratios: dict[str, list[float]] = {side: [] for side in RECEIVERS}
    connections = 2 * case.workers
    for round_ in range(1, ROUNDS[case.items] + 1):
        floor, floor_cpu = 1, 1.0
        for side, by_kind in urls.items():
            before = running[side].cpu_seconds()
            got = _wrk(by_kind[case.kind], case.body, case.seconds, connections)
            cpu = (running[side].cpu_seconds() - before) / max(1, got["requests"]) * 1e6
            totals[side] += got["requests"]
            errors = got["timeouts"] + sum(v for k, v in got.items() if "error" in k)
            if side == "floor":
                floor, floor_cpu = max(1, got["requests"]), cpu
            else:
                ratios[side].append(got["requests"] / floor)
                cpu_ratios[side].append(floor_cpu / cpu if cpu else math.nan)
            rows.append((
                case.workers, label, round_, side,
                f"{got['requests'] / got['duration_us'] * 1e6:.0f}",
                f"{got['p50_us'] / 1000:.2f}",
                f"{got['p99_us'] / 1000:.2f}",
                errors,
                f"{cpu:.0f}",
                "" if side == "floor" else f"{ratios[side][-1]:.3f}",
                "" if side == "floor" else f"{cpu_ratios[side][-1]:.3f}",
            ))  # fmt: skip
    for side in RECEIVERS:
        ratio = statistics.median(ratios[side])
        cpu_ratio = statistics.median(cpu_ratios[side])
        summed = totals[side] / max(1, totals["floor"])
        rows.append((case.workers, label, "all", f"{side}: median (summed)", "", "", "", "", "",
                     f"**{ratio:.3f}** ({summed:.3f})", f"{cpu_ratio:.3f}"))  # fmt: skip
        if case.items == 1 and case.workers == 1:
            name = f"1-item {case.kind} envelope, req/s {side} / floor, 1 worker"
            if side in HTTP_TARGETS:
                goal = HTTP_TARGETS[side]
                report.target(name, f"{ratio:.3f}", f"at least {goal:.2f}", ratio >= goal)
            else:
                report.context(name, f"{ratio:.3f}", f"CPU ratio {cpu_ratio:.3f}")


# -- 4: ack latency ----------------------------------------------------------------------------


ACK_SLEEP = 0.05
ACK_WORKERS = 100


def _thread_pool_dispatcher() -> t.Any:
    for module in ("yalgaar_receiver", "yalgaar_receiver.dispatch"):
        found = getattr(importlib.import_module(module), "ThreadPoolDispatcher", None)
        if isinstance(found, type):
            return found
    return None


def ack_latency(report: Report, requests: int) -> None:
    report.say("## 4. Ack latency with the background dispatcher")
    report.say()
    dispatcher_class = _thread_pool_dispatcher()
    if dispatcher_class is None:
        reason = (
            "skipped: this version of yalgaar_receiver has no ThreadPoolDispatcher "
            "(the background dispatcher has not been merged yet)."
        )
        report.say(reason)
        report.say()
        report.target("ack latency, 200 items, handlers sleeping 50 ms", "not measured",
                      "p99 reported", None)  # fmt: skip
        return
    # The pool is sized to run the handlers as fast as the requests bring them (200 events
    # every 0.1 s, 50 ms each), so that the queue never fills and every answer is a 200.
    dispatcher = dispatcher_class(max_workers=ACK_WORKERS, queue_size=requests * 200)
    receiver = Receiver(client_keys=[envelopes.CLIENT_KEY], dispatcher=dispatcher)
    ran = [0]
    lock = threading.Lock()

    @receiver.on_event
    def slow_handler(event: Event) -> None:
        time.sleep(ACK_SLEEP)
        with lock:
            ran[0] += 1

    app = Flask("ack")
    blueprint = create_blueprint(receiver, url_tokens=[TOKEN])
    app.register_blueprint(blueprint, url_prefix="/yalgaar")
    client = app.test_client()
    body = envelopes.body("presence", 200)
    times = []
    statuses: collections.Counter[int] = collections.Counter()
    try:
        for _ in range(requests):
            start = time.perf_counter()
            answer = client.post(
                f"/yalgaar/{TOKEN}/presence", data=body, content_type="application/json"
            )
            times.append(time.perf_counter() - start)
            statuses[answer.status_code] += 1
            time.sleep(max(0.0, 0.1 - times[-1]))
    finally:
        drained = dispatcher.close(timeout=60)
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, math.ceil(0.99 * len(times)) - 1)]
    report.say(
        f"{requests} POSTs of a 200-item presence envelope through the blueprint (Flask's "
        f"test client, in process), one every 0.1 s; `ThreadPoolDispatcher(max_workers="
        f"{ACK_WORKERS})`; one `on_event` handler that sleeps {ACK_SLEEP * 1000:.0f} ms. Inline, "
        f"each answer would wait for 200 x {ACK_SLEEP * 1000:.0f} ms = "
        f"{200 * ACK_SLEEP:.0f} s of handlers."
    )
    report.say()
    report.table(
        ("answers", "p50 ms", "p99 ms", "max ms", "handler calls run", "queue drained"),
        [(
            ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items())),
            f"{p50 * 1000:.2f}", f"{p99 * 1000:.2f}", f"{times[-1] * 1000:.2f}",
            f"{ran[0]} of {requests * 200}", "yes" if drained else "no",
        )],
    )  # fmt: skip
    report.target("ack latency p99, 200 items, handlers sleeping 50 ms",
                  f"{p99 * 1000:.2f} ms", "p99 reported (under the 50 ms of one handler)",
                  p99 < ACK_SLEEP and statuses == {200: requests})  # fmt: skip


# -- 5: the fixed cost of a request, in process -----------------------------------------------


def fixed_cost(report: Report, with_instructions: bool, rounds: int) -> None:
    report.say("## 5. The fixed cost of a request, in process")
    report.say()
    report.say(
        "Context for measurement 1, which it does not replace: the same three apps called "
        "directly as WSGI apps, with the environ gunicorn builds, for a one-item body "
        f"(`benchmarks/fixed_cost.py`). Time is the best of {rounds} interleaved rounds of 2000 "
        "requests. Instructions are what `valgrind --tool=cachegrind` counts per request (1000 "
        "requests, less a run without them); the count repeats when the same code runs the same "
        "way (about 1% apart between set-ups), so it tells a change from the machine's noise, "
        "but it leaves out the CPU caches, which the HTTP figures include."
    )
    report.say()
    rows = fixed_cost_module.table(envelopes.KINDS, with_instructions, rounds)
    report.table(fixed_cost_module.HEADER, rows)


# -- 6: throughput end to end ------------------------------------------------------------------


def end_to_end(report: Report, count: int) -> None:
    report.say("## 6. Throughput end to end")
    report.say()
    report.say(
        f"{count} envelopes ({count * throughput.ENVELOPE_FACTOR} for `mode=envelope`, over "
        "too soon otherwise) of 200 Presence binds (each of a uuid of its own, so none is a "
        f"duplicate) POSTed by {throughput.POSTERS} client threads to gunicorn "
        f"({throughput.WEB_WORKERS} sync workers), published by `CeleryDispatcher` to a Redis "
        f"broker and run by one Celery worker (prefork, {throughput.WORKER_PROCESSES} processes) "
        "with a no-op handler per event signal, de-duplication in a `RedisDedupeStore` and a "
        "`PresenceTracker` on a `RedisPresenceStore` (`benchmarks/pipeline.py`). The broker and "
        "the stores are two `redis-server` processes, so that each one's CPU is read apart. The "
        "time runs from the first post until the presence store holds every uuid. The floor "
        "is bare Celery tasks on the same broker, queue and worker, published by the driver, "
        "each of which only counts itself (one `INCR` on the stores' server). `µs/event` is "
        "user and system CPU time per event (from /proc) of the gunicorn workers, the Celery "
        "worker with its pool, and each Redis; everything shares the 2 cores, so events/s is "
        "what this machine does with all of it at once, and CPU per event is the figure to "
        "plan with (docs/scaling.md)."
    )
    report.say()
    sides = throughput.measure(count)
    report.table(throughput.HEADER, throughput.rows(sides))
    report.say()
    key_bytes = [side.key_bytes for side in sides if side.key_bytes is not None]
    report.say(
        "A de-duplication key (`RedisDedupeStore`, kept for its ttl, 600 s by default) takes "
        f"{statistics.mean(key_bytes):.0f} bytes in the stores' Redis (`MEMORY USAGE`, the "
        "mean of 100 keys after each mode's run)."
    )
    report.say()
    floor = sides[0]
    for side in sides[1:]:
        total = sum(side.micros(kind) for kind in side.cpu)
        report.context(
            f"end to end, 200-item envelopes, {side.name}: events/s / floor tasks/s",
            f"{side.per_second / floor.per_second:.2f}",
            f"{side.per_second:,.0f} events/s; {total:.0f} CPU µs per event in all",
        )


# -- main --------------------------------------------------------------------------------------


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each wrk run")
    parser.add_argument("--samples", type=int, default=40, help="in-process samples per figure")
    parser.add_argument("--out", type=Path, help="also write the report to this Markdown file")
    parser.add_argument("--no-http", action="store_true", help="skip measurement 1 (wrk)")
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip valgrind's counts in measurement 5"
    )
    parser.add_argument(
        "--ack-requests", type=int, default=100, help="requests timed in measurement 4"
    )
    parser.add_argument(
        "--no-throughput", action="store_true", help="skip measurement 6 (Celery, Redis)"
    )
    parser.add_argument(
        "--envelopes", type=int, default=50, help="envelopes per side in measurement 6"
    )
    args = parser.parse_args(argv)
    if not args.no_http and shutil.which("wrk") is None:
        print("wrk is not installed; on Debian or Ubuntu: apt-get install wrk", file=sys.stderr)
        return 2
    if not args.no_throughput and shutil.which("redis-server") is None:
        print("redis-server is not installed; apt-get install redis-server", file=sys.stderr)
        return 2
    if not args.no_http and not Path(sys.executable).with_name("gunicorn").exists():
        print("gunicorn is not installed; pip install -e '.[bench]'", file=sys.stderr)
        return 2

    report = Report()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = _load()
    versions = _versions()
    if not args.no_http:
        http(report, args.seconds)
    in_process(report, args.samples)
    memory(report)
    ack_latency(report, args.ack_requests)
    fixed_cost(report, not args.no_instructions, rounds=min(9, args.samples))
    if not args.no_throughput:
        end_to_end(report, args.envelopes)
    load_end = _load()
    finished = datetime.datetime.now(datetime.timezone.utc)

    head = Report()
    head.say("# Benchmark results")
    head.say()
    head.say("Written by `make bench` (`benchmarks/bench.py`); every figure below is from the")
    head.say("one run described here. Absolute times are context only: targets are ratios.")
    head.say()
    head.say(f"- Date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC")
    head.say(f"- Machine: {_cpu()}, {os.cpu_count()} cores, {platform.system()} "
             f"{platform.release()}, shared with other users during the run")  # fmt: skip
    head.say(f"- Load average at start: {load_start}; at end: {load_end}")
    head.say("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    head.say()
    head.say("## Targets")
    head.say()
    head.table(
        ("target", "figure", "goal", "result"),
        (
            (name, figure, goal, "not measured" if met is None else "met" if met else "NOT met")
            for name, figure, goal, met in report.targets
        ),
    )
    if report.contexts:
        head.say("Reported beside the targets, not held by one:")
        head.say()
        head.table(("figure", "value", "note"), report.contexts)
    if args.out:
        args.out.write_text("\n".join(head.lines + report.lines).rstrip() + "\n")
        print(f"Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
