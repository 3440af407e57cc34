"""``create_blueprint()``: the Flask adapter, and the one place that chooses HTTP status codes.

Everything before it in the flow is framework-free; this module turns a request into a call of
:meth:`Receiver.handle <yalgaar_receiver.Receiver.handle>` and its outcome or refusal into an
answer. The status codes follow what webhook senders do with them: 2xx means "delivered, do not
send again", 5xx means "try again later", 4xx means "this will never work". So a malformed item
inside a good envelope is still a 200 (its siblings were handled; resending would run them twice),
and a failing handler is a 500 (resending is how the event gets another chance). Never 3xx (a
redirect loses the body) and never 410 (senders read it as "disable this webhook").

The settings of a registered blueprint (its app's receiver, the authentication layers, the body
limit) are resolved once per app, when it is registered, and kept in a :class:`BlueprintSettings`
that :func:`blueprint_settings` returns.

Imports: Flask and Werkzeug, the core, and the room's request authentication.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import typing as t
import zlib

from flask import Blueprint, Flask, Request, Response, request
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import BaseConverter

from .. import settings, signals, wire
from ..events import Outcome, Rejection
from ..exceptions import (
    AuthenticationError,
    ConfigurationError,
    DispatchUnavailableError,
    InvalidEnvelopeError,
    PayloadTooLargeError,
    UnsupportedEncodingError,
    YalgaarError,
)
from ..receiver import REFUSALS, Receiver
from .auth import SETTINGS, Authenticate, RequestAuth, RequestView, client_address

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "METHODS",
    "ROUTES",
    "BlueprintSettings",
    "blueprint_settings",
    "check_size",
    "create_blueprint",
]

#: Where registered blueprints keep their settings: ``app.extensions[EXTENSION][name]``.
EXTENSION: t.Final = "yalgaar_receiver"
#: The largest body read when ``max_body_bytes`` is set nowhere: 1 MiB, five times what 200
#: items of long JSON messages take.
DEFAULT_MAX_BODY_BYTES: t.Final = 1_048_576
_PROBLEM: t.Final = "application/problem+json"
_READ_SIZE: t.Final = 65_536

#: The blueprint's routes: (rule, endpoint, the source an envelope without one is taken to be).
#: Each is also served under a token segment (``/<token>/presence``, endpoint
#: ``presence_token``) when URL tokens are configured.
ROUTES: t.Final[tuple[tuple[str, str, str | None], ...]] = (
    ("/", "webhook", None),
    *((f"/{kind}", kind, kind) for kind in dict.fromkeys(wire.SOURCES.values())),
)

#: The methods the routes answer; every other one gets 405 (OPTIONS included: a preflight
#: would otherwise answer 200 without any authentication layer looking at it).
METHODS: t.Final = ("GET", "HEAD", "POST")
# The methods the 405 and 404 routes take, so that they answer in the blueprint's shape.
_OTHER_METHODS: t.Final = ("OPTIONS", "PUT", "PATCH", "DELETE", "TRACE")
_EVERY_METHOD: t.Final = (*METHODS, *_OTHER_METHODS)

# (status, title) per refusal; the first class in the MRO that is listed decides.
_REFUSAL_STATUS: t.Final[t.Mapping[type[YalgaarError], tuple[int, str]]] = {
    PayloadTooLargeError: (413, "Payload too large"),
    InvalidEnvelopeError: (400, "Invalid Yalgaar envelope"),
    AuthenticationError: (403, "Forbidden"),
    UnsupportedEncodingError: (415, "Unsupported media type"),
    DispatchUnavailableError: (503, "Service unavailable"),
}

# Content-Encoding to zlib's wbits. A "deflate" body is zlib-wrapped by the standard (RFC 9110),
# though some senders send it raw: raw deflate is tried when the wrapped form fails.
_ENCODINGS: t.Final[t.Mapping[str, int]] = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BlueprintSettings:
    """What one registered blueprint resolved for its app, when it was registered.

    :param name: the registered name (``register_blueprint(bp, name=...)`` included).
    :param receiver: the receiver that handles the app's requests: the one passed to
        :func:`create_blueprint`, or its :meth:`~yalgaar_receiver.Receiver.with_client_keys`
        copy when the keys come from ``YALGAAR_CLIENT_KEYS``.
    :param auth: the request-level authentication layers.
    :param max_body_bytes: the largest body read (413 above).
    :param fail_on_handler_error: answer 500 when a handler raised, so that the sender tries
        again; with ``False`` the failure is only logged and signalled.
    :param endpoints: each route's endpoint name, by the source it stands for (``None`` for
        the route that takes either); the token routes' names end in ``_token``.
    """

    name: str
    receiver: Receiver
    auth: RequestAuth
    max_body_bytes: int
    fail_on_handler_error: bool
    endpoints: t.Mapping[str | None, str]


def blueprint_settings(app: Flask, name: str | None = None) -> BlueprintSettings:
    """The settings a receiver blueprint resolved for ``app``.

    :param name: the name the blueprint was registered under; may be left out when the app
        has one receiver blueprint.
    :raises LookupError: no such blueprint, or several and no name.
    """
    registered: dict[str, BlueprintSettings] = app.extensions.get(EXTENSION, {})
    if not registered:
        raise LookupError(
            "The app has no Yalgaar receiver blueprint; register create_blueprint(receiver) "
            "on it first."
        )
    if name is None:
        if len(registered) > 1:
            raise LookupError(
                f"The app has several receiver blueprints ({', '.join(sorted(registered))}); "
                "name the one you mean."
            )
        return next(iter(registered.values()))
    try:
        return registered[name]
    except KeyError:
        raise LookupError(
            f"The app has no receiver blueprint named {name!r}; it has "
            f"{', '.join(sorted(registered))}."
        ) from None


def create_blueprint(
    receiver: Receiver,
    name: str = "yalgaar",
    *,
    url_tokens: t.Iterable[str] | None = None,
    basic_auth: t.Iterable[str | tuple[str, str]] | None = None,
    allowed_networks: t.Iterable[str] | None = None,
    trusted_proxies: int | None = None,
    authenticate: Authenticate | None = None,
    allow_client_key_only: bool | None = None,
    max_body_bytes: int | None = None,
    fail_on_handler_error: bool | None = None,
) -> Blueprint:
    """Build the blueprint that receives Yalgaar webhooks for ``receiver``.

    Routes, relative to the blueprint's ``url_prefix``: ``POST /presence`` (the dashboard's
    Presence URL), ``POST /message`` (its Message URL), and ``POST /`` for either; each also
    under a token segment (``/<token>/presence``) when URL tokens are configured. ``GET`` and
    ``HEAD`` on each answer 200 once authenticated, because senders probe a URL when it is saved.

    Every argument left at ``None`` is read from the app's config when the blueprint is
    registered (``YALGAAR_URL_TOKENS``, ``YALGAAR_BASIC_AUTH``, ``YALGAAR_ALLOWED_NETWORKS``,
    ``YALGAAR_TRUSTED_PROXIES``, ``YALGAAR_ALLOW_CLIENT_KEY_ONLY``, ``YALGAAR_MAX_BODY_BYTES``,
    ``YALGAAR_FAIL_ON_HANDLER_ERROR``), and the client keys too when the receiver has none
    (``YALGAAR_CLIENT_KEYS``). The authentication layers are those of
    :class:`~yalgaar_receiver.flask.auth.RequestAuth`; see ``docs/security.md``.

    :param name: the blueprint's name; give each one a different name to register several.
    :param max_body_bytes: the largest body read; 1 MiB by default (413 above).
    :param fail_on_handler_error: answer 500 when a handler raised (the default), so that the
        sender tries again.
    :raises ConfigurationError: at ``register_blueprint`` time, when neither the receiver nor
        ``YALGAAR_CLIENT_KEYS`` has a key and ``allow_unauthenticated`` is off, or when a
        setting cannot work.
    :warns YalgaarSecurityWarning: at ``register_blueprint`` time, when ``clientKey`` alone (or
        nothing) protects the endpoint.
    """
    blueprint = Blueprint(name, __name__)
    arguments: dict[str, t.Any] = {
        "url_tokens": url_tokens,
        "basic_auth": basic_auth,
        "allowed_networks": allowed_networks,
        "trusted_proxies": trusted_proxies,
        "allow_client_key_only": allow_client_key_only,
        "authenticate": authenticate,
        # A deprecated Receiver(max_body_bytes=...) counts as the argument.
        "max_body_bytes": _given(max_body_bytes, receiver, "max_body_bytes"),
        "fail_on_handler_error": _given(fail_on_handler_error, receiver, "fail_on_handler_error"),
    }

    @blueprint.record
    def register(state: BlueprintSetupState) -> None:
        registered = f"{state.name_prefix}.{state.name}".lstrip(".")
        record = _resolve(t.cast(Flask, state.app), registered, receiver, arguments)
        state.app.extensions.setdefault(EXTENSION, {})[registered] = record
        state.app.url_map.converters.setdefault(_AnyPath.name, _AnyPath)
        # No rule of the blueprint ever redirects, which would make the sender drop the body
        # (and could echo a URL token in Location): strict_slashes=False answers with and
        # without the trailing slash, merge_slashes=False leaves "//" alone.
        rules = {"strict_slashes": False, "merge_slashes": False}
        # A 404 in the same shape as every other answer, for any path that does not exist.
        unmatched = _observed(record, "unmatched", _answer_only(_not_found))
        for rule, endpoint, hint in ROUTES:
            # Each view holds its app's settings, bound here: no per-request look-up through
            # current_app.
            view = _observed(record, endpoint, functools.partial(_view, record, hint))
            other = _observed(record, endpoint, _answer_only(_method_not_allowed))
            # Without URL tokens a token segment is a path that does not exist; its rules stay
            # (the test client builds such paths from them) and answer as unmatched.
            token_view, token_other = (view, other) if record.auth.url_tokens else (unmatched,) * 2
            for path, suffix, served, refused in (
                (rule, "", view, other),
                ("/<token>" + rule, "_token", token_view, token_other),
            ):
                state.add_url_rule(
                    path,
                    endpoint + suffix,
                    served,
                    methods=list(METHODS),
                    provide_automatic_options=False,
                    **rules,
                )
                state.add_url_rule(
                    path,
                    f"{endpoint}{suffix}_other_methods",
                    refused,
                    methods=list(_OTHER_METHODS),
                    provide_automatic_options=False,
                    **rules,
                )
        # Anything else under the prefix.
        state.add_url_rule(
            f"/<{_AnyPath.name}:rest>",
            "not_found",
            unmatched,
            methods=list(_EVERY_METHOD),
            provide_automatic_options=False,
            **rules,
        )

    return blueprint


def _key_list(value: object, name: str) -> tuple[str, ...]:
    return settings.text_list(value, name, item="key")


def _given(argument: object, receiver: Receiver, name: str) -> t.Any:
    return argument if argument is not None else receiver.blueprint_defaults.get(name)


def _resolve(
    app: Flask, name: str, receiver: Receiver, arguments: t.Mapping[str, t.Any]
) -> BlueprintSettings:
    """Resolve what blueprint ``name`` needs for ``app``; the checks of every setting run here,
    so that a mistake fails at start-up."""
    config = app.config
    where = f"Blueprint {name!r}"
    try:
        none: tuple[str, ...] = ()
        keys = settings.resolve(
            "client_keys", receiver.client_keys or None, config, none, _key_list
        )
        app_receiver = receiver if keys == receiver.client_keys else receiver.with_client_keys(keys)
        app_receiver.check()
        auth = RequestAuth.from_settings(
            config,
            authenticate=arguments["authenticate"],
            **{setting: arguments[setting] for setting in SETTINGS},
        )
        max_body_bytes = settings.resolve(
            "max_body_bytes",
            arguments["max_body_bytes"],
            config,
            DEFAULT_MAX_BODY_BYTES,
            settings.positive_int,
        )
        fail_on_handler_error = settings.resolve(
            "fail_on_handler_error", arguments["fail_on_handler_error"], config, True, settings.flag
        )
    except ConfigurationError as error:
        raise ConfigurationError(f"{where}: {error}") from None
    auth.warn_if_weak(
        where=where,
        client_keys=bool(app_receiver.client_keys),
        allow_unauthenticated=app_receiver.allow_unauthenticated,
    )
    prefix = f"{name}."
    return BlueprintSettings(
        name=name,
        receiver=app_receiver,
        auth=auth,
        max_body_bytes=max_body_bytes,
        fail_on_handler_error=fail_on_handler_error,
        endpoints={hint: prefix + endpoint for _, endpoint, hint in ROUTES},
    )


#: A view that also gives the outcome of the body it handled, when it handled one.
_Answer = t.Callable[..., tuple[Response, Outcome | None]]


def _observed(record: BlueprintSettings, route: str, answer: _Answer) -> t.Callable[..., Response]:
    """The view of ``answer`` on ``route``: when anyone listens, it sends ``request_started``
    and ``request_answered`` as the app's receiver around it."""
    receiver = record.receiver

    def view(**arguments: t.Any) -> Response:
        if not (
            receiver.listened(signals.request_started)
            or receiver.listened(signals.request_answered)
        ):
            return answer(**arguments)[0]
        method = request.method
        receiver.notify(signals.request_started, route=route, method=method)
        started = time.perf_counter()
        response: Response | None = None
        outcome: Outcome | None = None
        try:
            response, outcome = answer(**arguments)
            return response
        finally:
            # A view that raised is answered 500 by Flask.
            receiver.notify(
                signals.request_answered,
                route=route,
                method=method,
                status=500 if response is None else response.status_code,
                seconds=time.perf_counter() - started,
                outcome=outcome,
            )

    return view


def _answer_only(view: t.Callable[..., Response]) -> _Answer:
    return lambda **arguments: (view(**arguments), None)


def _view(
    record: BlueprintSettings, source_hint: str | None, token: str | None = None
) -> tuple[Response, Outcome | None]:
    # Every attribute read through Flask's context proxies costs a look-up; this view is the
    # hot path of the whole package, so it resolves the request proxy once.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    auth = record.auth
    receiver = record.receiver
    seen: RequestView | None = None
    if auth.layers:
        seen = _request_view(req, auth, token)
        # The layers that need no body run before a byte of it is read.
        failed = auth.check(seen, hook=False)
        if failed is not None:
            return _refuse(receiver, failed), None
    post = req.method == "POST"
    body = b""
    if post:
        try:
            body = _read_body(receiver, req, record.max_body_bytes)
        except (*REFUSALS, UnsupportedEncodingError) as error:
            return _problem(error), None
    if seen is not None and auth.authenticate is not None:
        # The hook sees the body, which is what a signature would cover.
        failed = auth.check_hook(dataclasses.replace(seen, body=body))
        if failed is not None:
            return _refuse(receiver, failed), None
    if not post:
        probe = {"status": "ok", "receiver": "yalgaar-receiver", "blueprint": record.name}
        return _json(probe), None
    try:
        outcome = receiver.handle(body, source_hint=source_hint)
    except (*REFUSALS, DispatchUnavailableError) as error:
        return _problem(error), None
    status = 500 if outcome.failed and record.fail_on_handler_error else 200
    summary = _summary(outcome, deduplicating=receiver.dedupe is not None)
    return Response(summary, status=status, content_type="application/json"), outcome


def _request_view(req: Request, auth: RequestAuth, token: str | None) -> RequestView:
    """The framework-free view of the current request that the layers check.

    An ``authenticate`` hook sees everything; without one, only the fields that the configured
    layers read are collected (each costs look-ups in the WSGI environ on every request).
    """
    layers = auth.layers
    everything = "authenticate" in layers
    environ = req.environ
    remote = None
    if everything or "network" in layers:
        # Behind Werkzeug's ProxyFix, count the proxies from the socket's side as if it were not
        # there, so that trusted_proxies means the same with and without it.
        original = environ.get("werkzeug.proxy_fix.orig", {})
        remote = original.get("REMOTE_ADDR", environ.get("REMOTE_ADDR"))
        forwarded = original.get("HTTP_X_FORWARDED_FOR", environ.get("HTTP_X_FORWARDED_FOR"))
        if auth.trusted_proxies == 0:
            remote = req.remote_addr
        remote = client_address(remote, forwarded, auth.trusted_proxies)
    basic = None
    if everything or "basic_auth" in layers:
        authorization = req.authorization
        if authorization is not None and authorization.type == "basic":
            basic = (authorization.username or "", authorization.password or "")
    headers: dict[str, str] = {}
    for key, value in req.headers.items() if everything else ():
        key = key.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    query: dict[str, tuple[str, ...]] = {}
    # Parsing an empty query string still builds a MultiDict; a webhook URL rarely has one.
    if (everything or "url_token" in layers) and environ.get("QUERY_STRING"):
        args = req.args
        query = {k: tuple(args.getlist(k)) for k in args}
    return RequestView(
        method=req.method,
        path=req.path,
        remote_addr=remote,
        query=query,
        headers=headers,
        basic_auth=basic,
        url_token=token,
    )


def _refuse(receiver: Receiver, failed: str) -> Response:
    """The 403 for a failed layer, the same whichever failed."""
    error = AuthenticationError(
        f"The request from {request.remote_addr!r} failed the {failed} check.", layer=failed
    )
    receiver.refused(error)
    return _problem(error)


def _read_body(receiver: Receiver, req: Request, limit: int) -> bytes:
    """The body, inflated when it came compressed; at most ``limit`` bytes of it are read, and
    at most ``limit`` bytes inflated, so that memory stays bounded whatever is sent.

    :raises PayloadTooLargeError: over the limit, before or after inflating.
    :raises UnsupportedEncodingError: a ``Content-Encoding`` other than gzip or deflate.
    :raises InvalidEnvelopeError: the body cannot be read (broken chunked framing, a dropped
        connection) or inflated.
    """
    try:
        encodings = _encodings(req.headers.get("Content-Encoding", ""))
        body = _read_stream(req, limit)
        for encoding in reversed(encodings):
            body = _inflate(body, encoding, limit)
    except (*REFUSALS, UnsupportedEncodingError) as error:
        receiver.refused(error)
        raise
    return body


def _encodings(header: str) -> list[str]:
    """The encodings applied to the body, in the order they were applied."""
    names = [name.strip().lower() for name in header.split(",") if name.strip()]
    names = [name for name in names if name != "identity"]
    for name in names:
        if name not in _ENCODINGS:
            raise UnsupportedEncodingError(
                f"The body is encoded with {wire.preview(name, 40)}, which this receiver does not "
                "read; send it as it is, or compressed with gzip or deflate.",
                encoding=name,
            )
    return names


def check_size(length: int, limit: int) -> None:
    """Refuse a body of ``length`` bytes when it is more than ``limit`` (``max_body_bytes``).

    :raises PayloadTooLargeError: it is.
    """
    if length > limit:
        raise PayloadTooLargeError(
            f"The body has {length} bytes, more than max_body_bytes={limit}.",
            limit=limit,
            actual=length,
        )


def _read_stream(req: Request, limit: int) -> bytes:
    """Read at most one byte more than the limit, so an oversized body is never read whole."""
    length = req.content_length
    if length is not None:
        check_size(length, limit)
    # A chunked body has no Content-Length: read in pieces and stop one byte past the limit,
    # whatever the server's stream does with a large read() (some return short reads).
    stream = req.stream
    parts: list[bytes] = []
    size = 0
    # With a Content-Length, stop when it has arrived instead of asking for more and getting b"".
    while size <= limit and size != length:
        try:
            part = stream.read(min(_READ_SIZE, limit + 1 - size))
        except Exception as error:
            # The server's own parse error (a chunk size "zz", a missing last chunk, a dropped
            # connection): the body is unreadable, which is the sender's fault, not a 500.
            raise InvalidEnvelopeError(
                f"The request body could not be read ({type(error).__name__}): its chunked "
                "framing is broken or the connection was lost."
            ) from None
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        # Never a byte count: the rest of a streamed body was not read.
        raise PayloadTooLargeError(
            f"The body has more than max_body_bytes={limit} bytes.", limit=limit
        )
    return b"".join(parts)


def _inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """Inflate ``data``, refusing it as soon as it grows past ``limit`` bytes."""
    wbits = _ENCODINGS[encoding]
    attempts = (wbits, -zlib.MAX_WBITS) if encoding == "deflate" else (wbits,)
    for attempt in attempts:
        inflater = zlib.decompressobj(attempt)
        try:
            # max_length bounds the output: a small body that inflates to 1 GiB stops here.
            body = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLargeError(
                f"The body inflates to more than max_body_bytes={limit} bytes.", limit=limit
            )
        if not inflater.eof:
            raise InvalidEnvelopeError(f"The {encoding} body is cut short; send it whole.")
        return body
    raise InvalidEnvelopeError(
        f"The body is not valid {encoding} data, though Content-Encoding says it is."
    )


def _json(
    body: t.Mapping[str, t.Any], status: int = 200, mimetype: str = "application/json"
) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, mimetype=mimetype)


class _AnyPath(BaseConverter):
    """Any rest of a path, "/" and "//" included (Werkzeug's ``path`` refuses a leading "/")."""

    name: t.ClassVar[str] = "yalgaar_any_path"
    regex = ".*"
    part_isolating = False


def _not_found(**ignored: object) -> Response:
    # Never the path: it may hold a URL token.
    return _json({"type": "about:blank", "title": "Not Found", "status": 404}, 404, _PROBLEM)


def _method_not_allowed(**ignored: object) -> Response:
    response = _json(
        {
            "type": "about:blank",
            "title": "Method Not Allowed",
            "status": 405,
            "detail": f"This URL takes {', '.join(METHODS)}.",
        },
        405,
        _PROBLEM,
    )
    response.headers["Allow"] = ", ".join(METHODS)
    return response


def _problem(error: YalgaarError) -> Response:
    status, title = next(_REFUSAL_STATUS[c] for c in type(error).__mro__ if c in _REFUSAL_STATUS)
    body: dict[str, t.Any] = {"type": "about:blank", "title": title, "status": status}
    if isinstance(error, AuthenticationError):
        # Saying which check, envelope or why would help someone guessing; the log has it.
        body["detail"] = "The request is not authenticated."
    else:
        body["detail"] = str(error)
    if isinstance(error, InvalidEnvelopeError):
        body["messages"] = error.messages
        if error.rejected:
            body["rejected"] = [_rejection(r) for r in error.rejected]
    response = _json(body, status, _PROBLEM)
    if isinstance(error, DispatchUnavailableError):
        # Whole seconds: the only form of Retry-After besides an HTTP date.
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def _summary(outcome: Outcome, *, deduplicating: bool) -> str:
    """The answer to a handled request, as compact ASCII JSON (a lone surrogate from the input
    stays representable). ``duplicates`` comes with a de-duplication store only;
    ``dead_lettered`` and ``warnings`` only when there are some."""
    rejected = "[]"
    if outcome.rejected:
        rejected = json.dumps([_rejection(r) for r in outcome.rejected], separators=(",", ":"))
    more = f',"duplicates":{len(outcome.duplicates)}' if deduplicating else ""
    if outcome.dead_lettered:
        more += f',"dead_lettered":{len(outcome.dead_lettered)}'
    if outcome.warnings:
        more += f',"warnings":{json.dumps(list(outcome.warnings))}'
    return (
        f'{{"accepted":{len(outcome.accepted)},"rejected":{rejected},'
        f'"failed":{len(outcome.failed)}{more}}}'
    )


def _rejection(rejection: Rejection) -> dict[str, t.Any]:
    found = {"envelope": rejection.envelope, "index": rejection.index, "errors": rejection.errors}
    if rejection.handlers:
        found["handlers"] = list(rejection.handlers)
    return found
