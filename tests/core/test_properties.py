"""Property tests: no body, of any shape, makes the blueprint answer 5xx when no handler raises."""

from __future__ import annotations

import json
import typing as t

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yalgaar_receiver import Receiver, create_blueprint, parse_envelope

from ..payloads import KEY

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.one_of(st.just(KEY), json_values)
sources = st.sampled_from(["Presence", "Message", " presence", "Occupancy"])
actions = st.one_of(st.sampled_from(["bind", "unbind", " Bind ", "leave", "kick"]), json_values)
items = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.one_of(st.text(max_size=10), json_values),
        "uuid": st.one_of(st.text(max_size=10), json_values),
        "timestamp": st.one_of(
            st.sampled_from(["1521609600", "1521609600123", "2018-03-21T05:20:00Z", "", "0"]),
            json_values,
        ),
        "action": actions,
        "message": json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "source": st.one_of(sources, json_values),
        "sources": st.sampled_from(["Presence", "Message"]),
        "clientKey": keys,
        "data": st.one_of(st.lists(st.one_of(items, json_values), max_size=5), items, json_values),
    },
)
bodies = st.one_of(
    st.builds(lambda e: {"items": e}, st.one_of(envelopes, st.lists(envelopes, max_size=3))),
    envelopes,
    st.lists(envelopes, max_size=3),
    json_values,
)


def _app() -> Flask:
    receiver = Receiver(client_keys=[KEY], max_items=50)
    receiver.on_event(lambda event: None)
    app = Flask(__name__)
    app.config["YALGAAR_ALLOW_CLIENT_KEY_ONLY"] = True  # the warning is tested in test_auth.py
    app.register_blueprint(create_blueprint(receiver), url_prefix="/y")
    return app


APP = _app()
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _post(body: bytes, path: str = "/y/") -> int:
    return APP.test_client().post(path, data=body).status_code


@FAST
@given(bodies, st.sampled_from(["/y/", "/y/presence", "/y/message"]))
def test_structured_bodies_never_answer_5xx(body: t.Any, path: str) -> None:
    text = json.dumps(body, allow_nan=True).encode()
    status = _post(text, path)
    assert status in (200, 400, 403, 413), status


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_answer_5xx(body: bytes) -> None:
    assert _post(body) in (200, 400, 403, 413)


@FAST
@given(bodies)
def test_parse_envelope_only_raises_its_own_error(body: t.Any) -> None:
    from yalgaar_receiver import InvalidEnvelopeError

    try:
        batch = parse_envelope(json.dumps(body, allow_nan=True))
    except InvalidEnvelopeError:
        return
    assert all(isinstance(e.channel, (str, type(None))) for e in batch.events)
