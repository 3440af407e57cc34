"""Request-level authentication: the layers that protect an endpoint beyond ``clientKey``.

Yalgaar's only credential, ``clientKey``, ships inside every client app that connects to Yalgaar,
so anyone can read it and forge webhooks. The layers here close that, each optional, each with
several accepted secrets so that one can be rotated without downtime:

* ``url_tokens``: a secret in the webhook URL, as a path segment (``/yalgaar/<token>/presence``)
  or the ``token`` query parameter;
* ``basic_auth``: HTTP Basic credentials, written into the URL (``https://user:pass@host/...``);
* ``allowed_networks``: CIDR ranges the request must come from, counted behind
  ``trusted_proxies`` reverse proxies (``X-Forwarded-For`` is never read by default);
* ``authenticate``: a hook ``callable(RequestView) -> bool`` for anything else (a signed header a
  future Yalgaar may send).

Every secret is compared with :func:`hmac.compare_digest` against *every* configured value
(:class:`~yalgaar_receiver.settings.Secrets`), so the time taken says nothing about which one was
close. The checks work on a framework-free :class:`RequestView`, which
:mod:`yalgaar_receiver.flask.blueprint` builds from the Flask request; the client-key check stays
in :class:`~yalgaar_receiver.Receiver`. See ``docs/security.md``.

Imports: the standard library and the core's settings and exceptions (no Flask, so that another
adapter can reuse the checks).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import types
import typing as t
import warnings
from dataclasses import dataclass, field

from .. import settings
from .._links import page
from ..exceptions import ConfigurationError, YalgaarSecurityWarning

__all__ = [
    "SETTINGS",
    "TOKEN_PARAMETER",
    "RequestAuth",
    "RequestView",
    "client_address",
]

logger = logging.getLogger("yalgaar_receiver")

#: The query parameter that carries a URL token (``?token=...``).
TOKEN_PARAMETER: t.Final = "token"

#: The layers' settings, each with the Flask config key read when its ``create_blueprint``
#: argument is left at ``None`` (``authenticate`` is an argument only).
SETTINGS: t.Final[t.Mapping[str, str]] = {
    name: settings.config_key(name)
    for name in (
        "url_tokens",
        "basic_auth",
        "allowed_networks",
        "trusted_proxies",
        "allow_client_key_only",
    )
}

Network: t.TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
Authenticate: t.TypeAlias = "t.Callable[[RequestView], bool]"


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the layers (and an ``authenticate`` hook) may look at in one request.

    Everything that may hold a secret is kept out of ``repr``, so logging a view leaks nothing.

    :param method: the HTTP method, upper case.
    :param path: the request path as received, the token segment included.
    :param remote_addr: the client's address after proxy handling (see :func:`client_address`);
        ``None`` when it cannot be known.
    :param query: each query parameter's values, in order.
    :param headers: each header's value, names in lower case; repeated headers joined by ``", "``.
    :param basic_auth: the ``(username, password)`` of an ``Authorization: Basic`` header.
    :param url_token: the token path segment, when the request came in through one.
    :param body: the raw body, for an ``authenticate`` hook that checks a signature over it.
        The Flask blueprint reads it (at most ``max_body_bytes``) only after the other layers
        passed; it is ``b""`` for ``GET`` and ``HEAD``, and ``None`` for those other layers.
    """

    method: str
    path: str = field(repr=False)
    remote_addr: str | None
    query: t.Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    headers: t.Mapping[str, str] = field(default_factory=dict, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    url_token: str | None = field(default=None, repr=False)
    body: bytes | None = field(default=None, repr=False)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, trusted_proxies: int
) -> str | None:
    """The client's address, counting ``trusted_proxies`` proxies from the socket's side.

    With ``trusted_proxies=0`` (the default) this is the socket's peer and ``X-Forwarded-For``
    is ignored: anyone can write that header. With ``n`` proxies, each appends the address it
    saw, so the ``n``-th value from the right was written by the outermost trusted proxy; the
    values to its left are whatever the client claimed. This is what Werkzeug's ``ProxyFix``
    does with ``x_for=n``. Fewer values than proxies means the request did not come through
    them, and the address is unknown (``None``).
    """
    if trusted_proxies == 0:
        return remote_addr
    values = [v.strip() for v in (forwarded_for or "").split(",") if v.strip()]
    if len(values) < trusted_proxies:
        return None
    return values[-trusted_proxies]


class RequestAuth:
    """The request-level layers of one endpoint: all but the hook are checked before the body
    is read, the hook after (so that it can check a signature over the body).

    :param url_tokens: accepted URL tokens; a request must present one (path segment or
        ``?token=``) and every token it presents must be accepted.
    :param basic_auth: accepted ``"username:password"`` strings or ``(username, password)``
        pairs.
    :param allowed_networks: CIDR ranges (or single addresses) the client must be in.
    :param trusted_proxies: how many reverse proxies stand in front of the app and append to
        ``X-Forwarded-For``; 0 trusts none.
    :param authenticate: called with the :class:`RequestView` (its ``body`` included) after
        every other layer passed; the request passes only when it returns ``True`` (anything
        else, or an exception, refuses it).
    :param allow_client_key_only: acknowledge that ``clientKey`` alone protects the endpoint,
        which silences the :class:`~yalgaar_receiver.YalgaarSecurityWarning` about it.
    :raises ConfigurationError: a value that cannot work (an empty token, a malformed range).
    """

    __slots__ = (
        "_basic",
        "_checks",
        "_tokens",
        "allow_client_key_only",
        "allowed_networks",
        "authenticate",
        "layers",
        "trusted_proxies",
        "url_tokens",
    )

    def __init__(
        self,
        *,
        url_tokens: t.Iterable[str] | str = (),
        basic_auth: t.Iterable[str | tuple[str, str]] | str = (),
        allowed_networks: t.Iterable[str] | str = (),
        trusted_proxies: int | str = 0,
        authenticate: Authenticate | None = None,
        allow_client_key_only: bool | str = False,
    ) -> None:
        tokens = _tokens(url_tokens, "url_tokens")
        self.url_tokens: tuple[str, ...] = tokens
        self._tokens = settings.Secrets(tokens)
        self._basic = settings.Secrets(_credentials(basic_auth, "basic_auth"))
        self.allowed_networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(text, strict=False)
            for text in _networks(allowed_networks, "allowed_networks")
        )
        self.trusted_proxies = settings.count(trusted_proxies, "trusted_proxies")
        if authenticate is not None and not callable(authenticate):
            raise ConfigurationError(
                f"authenticate must be a callable taking a RequestView, not {authenticate!r}."
            )
        self.authenticate = authenticate
        self.allow_client_key_only = settings.flag(allow_client_key_only, "allow_client_key_only")
        # The layers that need no body, in the order they are checked; each one's check assumes
        # it is configured.
        self._checks: tuple[tuple[str, t.Callable[[RequestView], bool]], ...] = tuple(
            (name, passes)
            for name, passes, configured in (
                ("network", self._network_ok, self.allowed_networks),
                ("url_token", self._token_ok, self._tokens),
                ("basic_auth", self._basic_ok, self._basic),
            )
            if configured
        )
        hook = ("authenticate",) if self.authenticate is not None else ()
        #: The names of the configured layers, in the order they are checked.
        self.layers: tuple[str, ...] = (*(name for name, _ in self._checks), *hook)

    @classmethod
    def from_settings(
        cls,
        config: t.Mapping[str, t.Any] | None,
        *,
        authenticate: Authenticate | None = None,
        **arguments: t.Any,
    ) -> RequestAuth:
        """Build from ``create_blueprint`` arguments, each one left at ``None`` read from
        ``config`` (see :func:`~yalgaar_receiver.settings.resolve`).

        :param config: the Flask app's config, read for the keys in :data:`SETTINGS`.
        """
        unknown = arguments.keys() - SETTINGS.keys()
        if unknown:
            raise TypeError(f"Unknown authentication settings: {sorted(unknown)}.")
        values = {
            name: settings.resolve(name, arguments.get(name), config, _DEFAULTS[name], check)
            for name, check in _CHECKS.items()
        }
        return cls(authenticate=authenticate, **values)

    def __repr__(self) -> str:
        # Counts only: a repr ends up in logs.
        return (
            f"<RequestAuth url_tokens={len(self.url_tokens)} basic_auth={len(self._basic)} "
            f"allowed_networks={len(self.allowed_networks)} "
            f"trusted_proxies={self.trusted_proxies} "
            f"authenticate={'yes' if self.authenticate else 'no'}>"
        )

    def check(self, view: RequestView, *, hook: bool = True) -> str | None:
        """Check ``view`` against every configured layer; the first one that failed, or ``None``.

        The network, token and credential layers are all evaluated whatever the others said,
        so the time taken does not tell which one failed. The hook runs only when they passed:
        it is the application's code, and may be slow or have side effects.

        :param hook: also run the ``authenticate`` hook. The Flask blueprint passes ``False``
            before it reads the body, then calls :meth:`check_hook` with the body in the view.
        """
        failed = None
        for name, passes in self._checks:
            if not passes(view) and failed is None:
                failed = name
        if failed is not None:
            return failed
        return self.check_hook(view) if hook else None

    def check_hook(self, view: RequestView) -> str | None:
        """Run only the ``authenticate`` hook: ``"authenticate"`` when it refused, else ``None``."""
        if self.authenticate is not None and not self._hook_ok(view):
            return "authenticate"
        return None

    def _network_ok(self, view: RequestView) -> bool:
        address = _address(view.remote_addr)
        if address is None:
            return False
        return any(address in network for network in self.allowed_networks)

    def _token_ok(self, view: RequestView) -> bool:
        presented = view.query.get(TOKEN_PARAMETER, ())
        if view.url_token is not None:
            presented = (*presented, view.url_token)
        if not presented:
            return False
        # Every token presented must be accepted: a wrong one next to a right one is a probe.
        accepted = True
        for token in presented:
            accepted &= self._tokens.matches(token)
        return accepted

    def _basic_ok(self, view: RequestView) -> bool:
        if view.basic_auth is None:
            return False
        username, password = view.basic_auth
        return self._basic.matches(f"{username}:{password}")

    def _hook_ok(self, view: RequestView) -> bool:
        assert self.authenticate is not None
        try:
            result = self.authenticate(view)
        except Exception:
            # Fail closed; the traceback is the application's and it needs to see it.
            logger.exception("The authenticate hook raised; the request is refused.")
            return False
        close = getattr(result, "close", None)
        if result is not True and callable(close) and hasattr(result, "__await__"):
            # An ``async def`` hook returned a coroutine, which is truthy but proves nothing.
            close()
            logger.error("The authenticate hook returned a coroutine; it must return a bool.")
        return result is True

    def warn_if_weak(self, *, where: str, client_keys: bool, allow_unauthenticated: bool) -> None:
        """Issue a :class:`~yalgaar_receiver.YalgaarSecurityWarning` when the endpoint is weak.

        :param where: names the endpoint in the message (``"Blueprint 'yalgaar'"``).
        :param client_keys: whether client keys are configured.
        :param allow_unauthenticated: the receiver's setting of that name.
        """
        if self.layers:
            return
        fix = (
            "Set YALGAAR_URL_TOKENS (a secret token in the webhook URL), YALGAAR_BASIC_AUTH or "
            "YALGAAR_ALLOWED_NETWORKS, or pass the create_blueprint argument of the same name "
            f"in lower case; see {page('security')}"
        )
        if client_keys:
            if self.allow_client_key_only:
                return
            message = (
                f"{where} is protected by clientKey alone, and clientKey ships inside every "
                f"client app, so anyone can read it and forge webhooks. {fix}. To accept the "
                "risk, set YALGAAR_ALLOW_CLIENT_KEY_ONLY = True."
            )
        elif allow_unauthenticated:
            message = (
                f"{where} ACCEPTS WEBHOOKS FROM ANYONE: allow_unauthenticated=True and no "
                "client key, URL token, Basic credential, network allow list or authenticate "
                f"hook is configured. Never deploy this. {fix}."
            )
            # Louder: also in the log, which a deployment reads even when warnings are hidden.
            logger.warning("%s", message)
        else:
            return
        warnings.warn(message, YalgaarSecurityWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The ``stacklevel`` of the application's frame that led here (its ``register_blueprint``
    call), so that the warning points at the line to change, not into Flask."""
    # Level 1 is the function that calls warnings.warn (warn_if_weak), one frame up from here.
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and _internal(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
        level += 1
    return level


_INTERNAL: t.Final = ("yalgaar_receiver", "flask", "werkzeug")


def _internal(module: str) -> bool:
    return module.partition(".")[0] in _INTERNAL


def _tokens(value: object, name: str) -> tuple[str, ...]:
    tokens = settings.text_list(value, name)
    for token in tokens:
        if "/" in token:
            raise ConfigurationError("A URL token may not contain '/'; use URL-safe text.")
    return tokens


def _credentials(value: object, name: str) -> tuple[str, ...]:
    # One string is one credential: a password may hold a comma.
    entries = [value] if isinstance(value, str) else list(t.cast(t.Iterable[object], value))
    return tuple(_credential(entry) for entry in entries)


def _credential(value: object) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        username, password = value
    elif isinstance(value, str) and ":" in value:
        username, _, password = value.partition(":")
    else:
        # Never echo the value: it is a password.
        raise ConfigurationError(
            "basic_auth must hold 'username:password' strings or (username, password) pairs."
        )
    if not isinstance(username, str) or not isinstance(password, str):
        raise ConfigurationError("basic_auth usernames and passwords must be strings.")
    if not username or ":" in username or not password:
        raise ConfigurationError(
            "Each basic_auth credential needs a username without ':' and a non-empty password."
        )
    return f"{username}:{password}"


def _networks(value: object, name: str) -> tuple[str, ...]:
    texts = settings.text_list(value, name)
    for text in texts:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigurationError(
                f"{name} holds {text!r}, which is not an address or a CIDR range "
                "such as '203.0.113.0/24'."
            ) from None
    return texts


#: How each setting of :data:`SETTINGS` is checked, and its default.
_CHECKS: t.Final[t.Mapping[str, settings.Check[t.Any]]] = {
    "url_tokens": _tokens,
    "basic_auth": _credentials,
    "allowed_networks": _networks,
    "trusted_proxies": settings.count,
    "allow_client_key_only": settings.flag,
}
_DEFAULTS: t.Final[t.Mapping[str, t.Any]] = {
    "url_tokens": (),
    "basic_auth": (),
    "allowed_networks": (),
    "trusted_proxies": 0,
    "allow_client_key_only": False,
}


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
        return address.ipv4_mapped
    return address
