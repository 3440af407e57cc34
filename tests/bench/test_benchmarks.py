"""The benchmark suite stays runnable: its apps answer as the figures assume, its bodies are what
they claim, and a short in-process run writes a report. No figure is asserted here: speed is
measured by ``make bench`` as ratios, never by a timed test."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import apps  # noqa: E402
import bench  # noqa: E402
import envelopes  # noqa: E402
import fixed_cost  # noqa: E402
import pipeline  # noqa: E402
import throughput  # noqa: E402

from yalgaar_receiver import (  # noqa: E402
    BindEvent,
    MessageEvent,
    UnbindEvent,
    parse_envelope,
    signals,
)
from yalgaar_receiver.flask.blueprint import DEFAULT_MAX_BODY_BYTES  # noqa: E402

from ..servers import RedisServer, require_program  # noqa: E402

JSON = "application/json"


@pytest.mark.parametrize("kind", envelopes.KINDS)
def test_floor_and_receiver_apps_answer_the_benchmark_bodies(kind: str) -> None:
    body = envelopes.body(kind, 200)
    # wrk sends the Content-Type Yalgaar sends; the floor's get_json() insists on it.
    floor = apps.make_floor().test_client().post("/floor", data=body, content_type=JSON)
    assert floor.status_code == 204
    for app, path in (
        (apps.make_receiver(), f"/yalgaar/{kind}"),
        (apps.make_receiver(url_token=True), f"/yalgaar/{envelopes.URL_TOKEN}/{kind}"),
    ):
        answer = app.test_client().post(path, data=body, content_type=JSON)
        assert answer.status_code == 200
        assert answer.get_json() == {"accepted": 200, "failed": 0, "rejected": []}


def test_the_instrumented_receiver_really_counts_and_traces() -> None:
    # The switch the instrumented figures compare: on, metrics move and spans are made; off,
    # the app has no instruments at all.
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    app = apps.make_receiver(instrumented=True)
    metrics, traced, provider = app.extensions["bench_instruments"]
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    body = envelopes.body("presence", 200)
    assert (
        app.test_client().post("/yalgaar/presence", data=body, content_type=JSON).status_code == 200
    )
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("yalgaar.receive") == 1 and names.count("yalgaar.handle") == 400
    counted = metrics.registry.get_sample_value("yalgaar_events_total", {"kind": "bind"}) or 0
    assert counted > 0
    assert apps.make_receiver().extensions["bench_instruments"] is None
    receiver = bench._one_handler_receiver()
    counting, tracing_too, in_process = apps.instrument(receiver)
    in_process.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.clear()
    receiver.handle(body)
    assert len(exporter.get_finished_spans()) == 200  # one handler, 200 events
    for instruments in (metrics, traced, counting, tracing_too):
        instruments.close()


def test_each_instrument_switch_of_the_benchmark_is_live() -> None:
    # The in-process table compares metrics alone, traces alone and both; the HTTP side
    # receiver+instruments-1% samples. Each switch must change what runs.
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    body = envelopes.body("presence", 200)
    alone = bench._one_handler_receiver()
    counted, no_traces, no_provider = apps.instrument(alone, traces=False)
    assert no_traces is None and no_provider is None
    assert not alone.listened(signals.handler_started)
    alone.handle(body)
    assert (counted.registry.get_sample_value("yalgaar_events_total", {"kind": "bind"}) or 0) > 0
    counted.close()
    alone = bench._one_handler_receiver()
    no_metrics, traced, provider = apps.instrument(alone, metrics=False)
    assert no_metrics is None and not alone.listened(signals.event_rejected)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    alone.handle(body)
    assert len(exporter.get_finished_spans()) == 200
    traced.close()
    # Sampling: what the 1% side is configured with, and a ratio of 0 makes no span at all
    # (the request's is dropped, and its handler calls make none) while metrics still count.
    app = apps.make_receiver(instrumented=True, sampled=0.01)
    assert (
        "TraceIdRatioBased{0.01}"
        in app.extensions["bench_instruments"][2].sampler.get_description()
    )
    for instruments in app.extensions["bench_instruments"][:2]:
        instruments.close()
    app = apps.make_receiver(instrumented=True, sampled=0.0)
    metrics, traced, provider = app.extensions["bench_instruments"]
    exporter.clear()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    answer = app.test_client().post("/yalgaar/presence", data=body, content_type=JSON)
    assert answer.status_code == 200
    assert exporter.get_finished_spans() == ()
    assert (metrics.registry.get_sample_value("yalgaar_events_total", {"kind": "bind"}) or 0) > 0
    metrics.close()
    traced.close()


@pytest.mark.parametrize("kind", envelopes.KINDS)
def test_bodies_are_valid_envelopes_with_realistic_timestamps(kind: str) -> None:
    batch = parse_envelope(envelopes.body(kind, 200))
    assert not batch.rejected
    expected = {BindEvent, UnbindEvent} if kind == "presence" else {MessageEvent}
    assert {type(e) for e in batch.events} == expected
    # Cut from a stream of 100 events per second, as Yalgaar batches every 2 s.
    assert len({e.timestamp for e in batch.events}) == 2
    distinct = parse_envelope(envelopes.body(kind, 200, distinct_timestamps=True))
    assert len({e.timestamp for e in distinct.events}) == 200


def test_body_of_size_fills_the_limit_without_passing_it() -> None:
    limit = DEFAULT_MAX_BODY_BYTES
    body, count = envelopes.body_of_size("message", limit)
    assert limit - 250 < len(body) <= limit
    assert len(parse_envelope(body).events) == count


def test_a_short_in_process_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    args = ["--no-http", "--no-instructions", "--no-throughput", "--samples", "1"]
    args += ["--ack-requests", "3"]
    args += ["--out", str(out)]
    assert bench.main(args) == 0
    text = out.read_text()
    assert "## Targets" in text
    assert "Load average at start" in text
    for figure in ("parse + validate + events", "receiver.handle", "per-item cost 1000 / 200",
                   "peak RSS growth", "ack latency", "## 5. The fixed cost"):  # fmt: skip
        assert figure in text
    assert "not counted (no valgrind)" in text  # --no-instructions
    # Every target line says met, NOT met or not measured.
    lines = [line for line in text.splitlines() if line.startswith("| ") and "at most" in line]
    assert lines and all(line.rstrip(" |").endswith(("met", "not measured")) for line in lines)


def test_the_memory_probe_reports_growth(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(envelopes.body("message", 2000))
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "memory_probe.py"), "message", str(body)],
        capture_output=True,
        text=True,
        cwd=BENCHMARKS,
        timeout=120,
        check=True,
    )
    probe = json.loads(result.stdout)
    assert probe["items"] == 2000
    assert probe["peak_during_kib"] >= probe["rss_before_kib"]


def test_a_short_http_run_reports_every_side_with_its_cpu_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Real gunicorns on 127.0.0.1 driven by wrk, one short round each: the code path of
    # measurement 1 runs, and every row carries requests and the workers' CPU time.
    require_program("wrk")
    monkeypatch.setattr(bench, "WORKERS", (1,))
    monkeypatch.setattr(bench, "HTTP_ITEMS", (1,))
    monkeypatch.setattr(bench, "ROUNDS", {1: 1})
    report = bench.Report()
    bench.http(report, seconds=1)  # wrk counts whole seconds
    rows = [line.split(" | ") for line in report.lines if line.startswith("| 1 | ")]
    measured = [row for row in rows if row[2] == "1"]
    assert {(row[1], row[3]) for row in measured} == {
        (f"{kind}, 1", side) for kind in envelopes.KINDS for side in ("floor", *bench.RECEIVERS)
    }
    for row in measured:
        assert float(row[4]) > 0  # req/s
        assert row[7] == "0"  # no errors
        assert float(row[8]) > 0  # CPU µs per request, read from /proc
    assert [name for name, *_ in report.targets] == [
        f"1-item {kind} envelope, req/s {side} / floor, 1 worker"
        for kind in envelopes.KINDS
        for side in ("receiver", "receiver+instruments")
    ]
    assert [name for name, *_ in report.contexts] == [
        f"1-item {kind} envelope, req/s {side} / floor, 1 worker"
        for kind in envelopes.KINDS
        for side in ("receiver+token", "receiver+instruments-1%")
    ]


def test_valgrind_counts_the_instructions_of_every_app() -> None:
    # The same count on every run of the same code: what tells a change from the machine's noise.
    require_program("valgrind")
    counts = fixed_cost.instructions("presence", count=20)
    assert counts is not None
    assert set(counts) == set(fixed_cost.SIDES)
    # Sanity of the method, not a speed figure: each app runs tens of thousands of instructions
    # per request, and the receiver does at least the floor's work (it decodes the same JSON).
    assert all(count > 10_000 for count in counts.values())
    assert counts["receiver"] > counts["floor"]


@pytest.mark.parametrize(("mode", "messages"), [("event", 200), ("envelope", 1)])
def test_the_pipeline_publishes_as_its_mode_says(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, mode: str, messages: int
) -> None:
    # The switch measurement 6 compares: BENCH_MODE changes what the web side publishes.
    import redis

    monkeypatch.setenv("BENCH_BROKER_URL", redis_server.url)
    monkeypatch.setenv("BENCH_STORE_URL", redis_server.url)
    monkeypatch.setenv("BENCH_MODE", mode)
    broker = redis.Redis.from_url(redis_server.url)
    broker.delete(pipeline.QUEUE)
    try:
        module = importlib.reload(pipeline)
        answer = (
            module.make_app()
            .test_client()
            .post("/yalgaar/presence", data=throughput.body(1), content_type=JSON)
        )
        assert answer.status_code == 200 and answer.get_json()["accepted"] == 200
        assert broker.llen(pipeline.QUEUE) == messages
    finally:
        monkeypatch.undo()
        importlib.reload(pipeline)
        broker.close()


def test_a_short_end_to_end_run_measures_every_side() -> None:
    # Real redis-servers, a real Celery worker and gunicorn: measurement 6's code path, small.
    require_program("redis-server")
    sides = throughput.measure(2)
    assert [side.name for side in sides] == ["floor", "mode=event", "mode=envelope"]
    assert [side.events for side in sides] == [400, 400, 400 * throughput.ENVELOPE_FACTOR]
    assert all(side.seconds > 0 for side in sides)
    assert set(sides[0].cpu) == {"worker", "broker", "stores"}
    for side in sides[1:]:
        assert set(side.cpu) == {"web", "worker", "broker", "stores"}
        assert side.cpu["web"] > 0 and side.cpu["worker"] > 0
    report = bench.Report()
    bench.end_to_end(report, 1)
    assert any(line.startswith("| mode=envelope | 1000 |") for line in report.lines)
