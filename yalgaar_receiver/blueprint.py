"""``create_blueprint()``: the Flask adapter, and the one place that chooses HTTP status codes.

Everything else in the package is framework-free; this module turns a request into a call of
:meth:`Receiver.handle <yalgaar_receiver.Receiver.handle>` and its outcome or refusal into an
answer. The status codes follow what webhook senders do with them: 2xx means "delivered, do not
send again", 5xx means "try again later", 4xx means "this will never work". So a malformed item
inside a good envelope is still a 200 (its siblings were handled; resending would run them twice),
and a failing handler is a 500 (resending is how the event gets another chance). Never 3xx (a
redirect loses the body) and never 410 (senders read it as "disable this webhook").
"""

from __future__ import annotations

import math
import typing as t

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from .events import Outcome, Rejection
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    DispatchUnavailableError,
    InvalidEnvelopeError,
    PayloadTooLargeError,
    YalgaarError,
)
from .receiver import REFUSALS, Receiver, normalize_keys

__all__ = ["create_blueprint"]

#: Config key read when the ``Receiver`` was built without client keys: a list, or one
#: comma-separated string.
CLIENT_KEYS_SETTING: t.Final = "YALGAAR_CLIENT_KEYS"

_EXTENSION: t.Final = "yalgaar_receiver"
_PROBLEM: t.Final = "application/problem+json"

# (status, title) per refusal; the first class in the MRO that is listed decides.
_REFUSAL_STATUS: t.Final[t.Mapping[type[YalgaarError], tuple[int, str]]] = {
    PayloadTooLargeError: (413, "Payload too large"),
    InvalidEnvelopeError: (400, "Invalid Yalgaar envelope"),
    AuthenticationError: (403, "Forbidden"),
    DispatchUnavailableError: (503, "Service unavailable"),
}


def create_blueprint(receiver: Receiver, name: str = "yalgaar") -> Blueprint:
    """Build the blueprint that receives Yalgaar webhooks for ``receiver``.

    Routes, relative to the blueprint's ``url_prefix``: ``POST /presence`` (the dashboard's
    Presence URL), ``POST /message`` (its Message URL), and ``POST /`` for either. ``GET`` and
    ``HEAD`` on each answer 200, because senders probe a URL when it is saved.

    :param name: the blueprint's name; give each one a different name to register several.
    :raises ConfigurationError: at ``register_blueprint`` time, when neither the receiver nor
        ``YALGAAR_CLIENT_KEYS`` has a key and ``allow_unauthenticated`` is off.
    """
    blueprint = Blueprint(name, __name__)

    @blueprint.record
    def configure(state: BlueprintSetupState) -> None:
        keys = receiver.client_keys or normalize_keys(
            state.app.config.get(CLIENT_KEYS_SETTING), CLIENT_KEYS_SETTING
        )
        if not keys and not receiver.allow_unauthenticated:
            raise ConfigurationError(
                f"Blueprint {name!r}: the receiver has no client key and "
                f"{CLIENT_KEYS_SETTING} is not set. Pass Receiver(client_keys=[...]) or set "
                f"app.config[{CLIENT_KEYS_SETTING!r}]; for local testing only, pass "
                "allow_unauthenticated=True."
            )
        state.app.extensions.setdefault(_EXTENSION, {})[name] = keys

    def view(source_hint: str | None) -> Response:
        if request.method != "POST":
            return jsonify(status="ok", receiver="yalgaar-receiver", blueprint=name)
        keys: tuple[str, ...] = current_app.extensions[_EXTENSION][name]
        try:
            outcome = receiver.handle(
                _read_body(receiver), source_hint=source_hint, client_keys=keys
            )
        except (*REFUSALS, DispatchUnavailableError) as error:
            return _problem(error)
        response = jsonify(_summary(outcome, deduplicating=receiver.dedupe is not None))
        if outcome.failed and receiver.fail_on_handler_error:
            response.status_code = 500  # jsonify answers 200; setting it costs a parse
        return response

    methods = ["GET", "HEAD", "POST"]
    for rule, endpoint, hint in (
        ("/", "webhook", None),
        ("/presence", "presence", "presence"),
        ("/message", "message", "message"),
    ):
        # strict_slashes=False: with and without the trailing slash, and never a redirect,
        # which would make the sender drop the body.
        blueprint.add_url_rule(
            rule,
            endpoint,
            lambda hint=hint: view(hint),
            methods=methods,
            strict_slashes=False,
        )
    return blueprint


def _read_body(receiver: Receiver) -> bytes:
    """Read at most one byte more than the limit, so an oversized body is never read whole."""
    limit = receiver.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        error = PayloadTooLargeError(
            f"The body has {length} bytes, more than max_body_bytes={limit}.",
            limit=limit,
            actual=length,
        )
        receiver.refused(error)
        raise error
    return request.stream.read(limit + 1)


def _problem(error: YalgaarError) -> Response:
    status, title = next(_REFUSAL_STATUS[c] for c in type(error).__mro__ if c in _REFUSAL_STATUS)
    body: dict[str, t.Any] = {"type": "about:blank", "title": title, "status": status}
    if isinstance(error, AuthenticationError):
        # Saying which envelope or why would help someone guessing keys; the log has it.
        body["detail"] = "The request's clientKey is missing or not accepted."
    else:
        body["detail"] = str(error)
    if isinstance(error, InvalidEnvelopeError):
        body["messages"] = error.messages
        if error.rejected:
            body["rejected"] = [_rejection(r) for r in error.rejected]
    response = jsonify(body)
    response.status_code = status
    response.mimetype = _PROBLEM
    if isinstance(error, DispatchUnavailableError):
        # Whole seconds: the only form of Retry-After besides an HTTP date.
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def _summary(outcome: Outcome, *, deduplicating: bool = False) -> dict[str, t.Any]:
    summary = {
        "accepted": len(outcome.accepted),
        "rejected": [_rejection(r) for r in outcome.rejected],
        "failed": len(outcome.failed),
    }
    if deduplicating:
        # Only with a dedupe store, so that the answer of a receiver without one is unchanged.
        summary["duplicates"] = len(outcome.duplicates)
    return summary


def _rejection(rejection: Rejection) -> dict[str, t.Any]:
    return {"envelope": rejection.envelope, "index": rejection.index, "errors": rejection.errors}
