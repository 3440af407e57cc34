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

import dataclasses
import functools
import json
import math
import typing as t

from flask import Blueprint, Request, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

from .auth import Authenticate, RequestAuth, RequestView, client_address
from .events import Outcome, Rejection
from .exceptions import (
    AuthenticationError,
    ConfigurationError,
    DispatchUnavailableError,
    InvalidEnvelopeError,
    PayloadTooLargeError,
    YalgaarError,
)
from .fastpath import record_builder
from .receiver import REFUSALS, Receiver, normalize_keys

__all__ = ["create_blueprint"]

#: Config key read when the ``Receiver`` was built without client keys: a list, or one
#: comma-separated string.
CLIENT_KEYS_SETTING: t.Final = "YALGAAR_CLIENT_KEYS"

_EXTENSION: t.Final = "yalgaar_receiver"
_PROBLEM: t.Final = "application/problem+json"
_READ_SIZE: t.Final = 65_536

# (status, title) per refusal; the first class in the MRO that is listed decides.
_REFUSAL_STATUS: t.Final[t.Mapping[type[YalgaarError], tuple[int, str]]] = {
    PayloadTooLargeError: (413, "Payload too large"),
    InvalidEnvelopeError: (400, "Invalid Yalgaar envelope"),
    AuthenticationError: (403, "Forbidden"),
    DispatchUnavailableError: (503, "Service unavailable"),
}


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
) -> Blueprint:
    """Build the blueprint that receives Yalgaar webhooks for ``receiver``.

    Routes, relative to the blueprint's ``url_prefix``: ``POST /presence`` (the dashboard's
    Presence URL), ``POST /message`` (its Message URL), and ``POST /`` for either; each also
    under a token segment (``/<token>/presence``) when URL tokens are configured. ``GET`` and
    ``HEAD`` on each answer 200 once authenticated, because senders probe a URL when it is saved.

    The keyword arguments are the request-level authentication layers of
    :class:`~yalgaar_receiver.auth.RequestAuth`; each one left at ``None`` is read from the
    app's config (``YALGAAR_URL_TOKENS``, ``YALGAAR_BASIC_AUTH``, ``YALGAAR_ALLOWED_NETWORKS``,
    ``YALGAAR_TRUSTED_PROXIES``, ``YALGAAR_ALLOW_CLIENT_KEY_ONLY``). See ``docs/security.md``.

    :param name: the blueprint's name; give each one a different name to register several.
    :raises ConfigurationError: at ``register_blueprint`` time, when neither the receiver nor
        ``YALGAAR_CLIENT_KEYS`` has a key and ``allow_unauthenticated`` is off, or when an
        authentication setting cannot work.
    :warns YalgaarSecurityWarning: at ``register_blueprint`` time, when ``clientKey`` alone (or
        nothing) protects the endpoint.
    """
    blueprint = Blueprint(name, __name__)
    auth_arguments: dict[str, t.Any] = {
        "url_tokens": url_tokens,
        "basic_auth": basic_auth,
        "allowed_networks": allowed_networks,
        "trusted_proxies": trusted_proxies,
        "authenticate": authenticate,
        "allow_client_key_only": allow_client_key_only,
    }

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
        auth = RequestAuth.from_settings(state.app.config, **auth_arguments)
        auth.warn_if_weak(
            where=f"Blueprint {name!r}",
            client_keys=bool(keys),
            allow_unauthenticated=receiver.allow_unauthenticated,
        )
        settings = _Settings(keys, auth, auth.layers)
        state.app.extensions.setdefault(_EXTENSION, {})[name] = settings
        # The rules are added here, once per app, so that each app's views hold its settings:
        # looking them up through current_app costs several calls into Werkzeug's proxies on
        # every request.
        for rule, endpoint, hint in _ROUTES:
            # A partial is called in C; it carries the view's name and module, by which tools
            # (the pytest plugin) find the receiver's rules.
            bound = functools.update_wrapper(functools.partial(view, settings, hint), view)
            # strict_slashes=False: with and without the trailing slash, and never a redirect,
            # which would make the sender drop the body.
            for path, suffix in ((rule, ""), ("/<token>" + rule, "_token")):
                state.add_url_rule(
                    path,
                    endpoint + suffix,
                    bound,
                    methods=["GET", "HEAD", "POST"],
                    strict_slashes=False,
                )

    def view(settings: _Settings, source_hint: str | None, token: str | None = None) -> Response:
        # Every attribute read through Flask's context proxies costs a lookup; this view is the
        # hot path of the whole package, so it resolves the request proxy once.
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        auth = settings.auth
        if token is not None and not auth.url_tokens:
            # No tokens configured: a token segment is just a path that does not exist.
            return _not_found()
        seen: RequestView | None = None
        if settings.layers:
            seen = _request_view(req, auth, settings.layers, token)
            # The layers that need no body run before a byte of it is read.
            failed = auth.check(seen, hook=False)
            if failed is not None:
                return _refuse(receiver, failed)
        body = b""
        post = req.method == "POST"
        if post:
            try:
                body = _read_body(receiver, req)
            except PayloadTooLargeError as error:
                return _problem(error)
        within_limit = len(body) <= receiver.max_body_bytes
        if seen is not None and auth.authenticate is not None and within_limit:
            # The hook sees the body, which is what a signature would cover; an oversized
            # body is refused by the receiver (413) without calling it.
            failed = auth.check_hook(dataclasses.replace(seen, body=body))
            if failed is not None:
                return _refuse(receiver, failed)
        if not post:
            return jsonify(status="ok", receiver="yalgaar-receiver", blueprint=name)
        try:
            outcome = receiver.handle(body, source_hint=source_hint, client_keys=settings.keys)
        except (*REFUSALS, DispatchUnavailableError) as error:
            return _problem(error)
        status = 500 if outcome.failed and receiver.fail_on_handler_error else 200
        summary = _summary(outcome, deduplicating=receiver.dedupe is not None)
        return Response(summary, status=status, content_type="application/json")

    return blueprint


#: ``RequestView(method=..., ..., body=None)``, built by its slots: every request to an endpoint
#: with a layer builds one (see :func:`~yalgaar_receiver.fastpath.record_builder`).
_new_view: t.Final = record_builder(
    RequestView,
    ("method", "path", "remote_addr", "query", "headers", "basic_auth", "url_token", "body"),
)


#: The blueprint's rules: (rule, endpoint, the source an envelope without one is taken to be).
_ROUTES: t.Final = (
    ("/", "webhook", None),
    ("/presence", "presence", "presence"),
    ("/message", "message", "message"),
)


class _Settings(t.NamedTuple):
    """What one app configured for one blueprint, resolved once at registration."""

    keys: tuple[str, ...]
    auth: RequestAuth
    layers: tuple[str, ...]


def _request_view(
    req: Request, auth: RequestAuth, layers: tuple[str, ...], token: str | None
) -> RequestView:
    """The framework-free view of the current request that the layers check.

    An ``authenticate`` hook sees everything; without one, only the fields that the configured
    layers read are collected (each costs lookups in the WSGI environ on every request).
    """
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
    # Parsing an empty query string still costs a MultiDict; a webhook URL rarely has one.
    if (everything or "url_token" in layers) and environ.get("QUERY_STRING"):
        args = req.args
        query = {k: tuple(args.getlist(k)) for k in args}
    return _new_view(req.method, req.path, remote, query, headers, basic, token, None)


def _refuse(receiver: Receiver, failed: str) -> Response:
    """The 403 for a failed layer, the same whichever failed."""
    error = AuthenticationError(
        f"The request from {request.remote_addr!r} failed the {failed} check.", layer=failed
    )
    receiver.refused(error)
    return _problem(error)


def _not_found() -> Response:
    response = jsonify(type="about:blank", title="Not Found", status=404)
    response.status_code = 404
    response.mimetype = _PROBLEM
    return response


def _read_body(receiver: Receiver, req: Request) -> bytes:
    """Read at most one byte more than the limit, so an oversized body is never read whole."""
    limit = receiver.max_body_bytes
    length = req.content_length
    if length is not None and length > limit:
        error = PayloadTooLargeError(
            f"The body has {length} bytes, more than max_body_bytes={limit}.",
            limit=limit,
            actual=length,
        )
        receiver.refused(error)
        raise error
    # A chunked body has no Content-Length: read in pieces and stop one byte past the limit,
    # whatever the server's stream does with a large read() (some return short reads).
    stream = req.stream
    parts: list[bytes] = []
    size = 0
    # With a Content-Length, stop when it has arrived instead of asking for more and getting b"".
    while size <= limit and size != length:
        part = stream.read(min(_READ_SIZE, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


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
    response = jsonify(body)
    response.status_code = status
    response.mimetype = _PROBLEM
    if isinstance(error, DispatchUnavailableError):
        # Whole seconds: the only form of Retry-After besides an HTTP date.
        response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def _summary(outcome: Outcome, *, deduplicating: bool = False) -> str:
    """The answer to a handled request, as compact ASCII JSON.

    Written out rather than built as a dict for ``json.dumps`` (or Flask's JSON provider): every
    request pays for this answer, and the counts need no encoder. Only the rejected items, which
    hold text from the input, go through ``json.dumps`` (a lone surrogate stays representable).
    """
    rejected = _dumps([_rejection(r) for r in outcome.rejected]) if outcome.rejected else "[]"
    # "duplicates" only with a dedupe store, so the answer of a receiver without one is unchanged.
    duplicates = f',"duplicates":{len(outcome.duplicates)}' if deduplicating else ""
    return (
        f'{{"accepted":{len(outcome.accepted)},"rejected":{rejected},'
        f'"failed":{len(outcome.failed)}{duplicates}}}'
    )


def _dumps(data: object) -> str:
    """Compact JSON, ASCII only: a lone surrogate from the input stays representable."""
    return json.dumps(data, separators=(",", ":"))


def _rejection(rejection: Rejection) -> dict[str, t.Any]:
    return {"envelope": rejection.envelope, "index": rejection.index, "errors": rejection.errors}
