"""The errors ``yalgaar_receiver`` raises, all under one base class.

The whole tree::

    YalgaarError(Exception)
    ├── InvalidEnvelopeError(YalgaarError, ValueError)   the body is no envelope (HTTP 400)
    ├── AuthenticationError(YalgaarError)                a credential did not match (HTTP 403)
    ├── PayloadTooLargeError(YalgaarError)               too many bytes or items (HTTP 413)
    ├── UnsupportedEncodingError(YalgaarError)           a Content-Encoding not read (HTTP 415)
    ├── DispatchUnavailableError(YalgaarError)           events cannot be queued now (HTTP 503)
    └── ConfigurationError(YalgaarError)                 a setup mistake, raised before any webhook

    YalgaarSecurityWarning(Warning)                      a start-up warning: the endpoint is weakly
                                                         protected (see docs/security.md)

The first four refuse a whole request; a malformed *item* inside a valid envelope is not an
exception but a :class:`~yalgaar_receiver.Rejection` in the outcome, so one bad item never costs
the good ones. ``ConfigurationError`` sits apart: it is raised at start-up (or on the first call
outside Flask) and means the code, not the sender, must change. ``DispatchUnavailableError`` is
the one temporary refusal: the body was fine, but the dispatcher cannot take its events right now
(a full queue, an unreachable broker), so none of them was accepted and the sender should send the
whole body again after ``retry_after`` seconds.

Status codes are chosen in one place only, :mod:`yalgaar_receiver.flask.blueprint`.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from .events import Rejection

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DispatchUnavailableError",
    "InvalidEnvelopeError",
    "PayloadTooLargeError",
    "UnsupportedEncodingError",
    "YalgaarError",
    "YalgaarSecurityWarning",
]


class YalgaarError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidEnvelopeError(YalgaarError, ValueError):
    """The body cannot be read as a Yalgaar envelope at all.

    :param message: a sentence for people and logs.
    :param messages: marshmallow-shaped details: a field name (or ``"_schema"`` for problems with
        the body as a whole) mapped to a list of messages.
    :param rejected: in strict mode, the malformed items that made the request fail.
    """

    def __init__(
        self,
        message: str,
        *,
        messages: dict[str, t.Any] | None = None,
        rejected: t.Sequence[Rejection] = (),
    ) -> None:
        super().__init__(message)
        self.messages: dict[str, t.Any] = (
            messages if messages is not None else {"_schema": [message]}
        )
        self.rejected: tuple[Rejection, ...] = tuple(rejected)


class AuthenticationError(YalgaarError):
    """No credential of the request matched the configuration.

    The message never contains a secret, so it is safe to log; the HTTP answer still does not
    show it, because saying which check failed would help someone guessing.

    :param layer: the check that failed: ``"client_key"``, ``"url_token"``, ``"basic_auth"``,
        ``"network"`` or ``"authenticate"`` (see :mod:`yalgaar_receiver.auth`).
    """

    def __init__(self, message: str, *, layer: str = "client_key") -> None:
        super().__init__(message)
        self.layer = layer


class PayloadTooLargeError(YalgaarError):
    """The body has more bytes than ``max_body_bytes`` or more items than ``max_items``.

    :param limit: the configured limit that was exceeded.
    :param actual: the size seen, when it is known (a streamed body may be cut off early).
    """

    def __init__(self, message: str, *, limit: int, actual: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.actual = actual


class UnsupportedEncodingError(YalgaarError):
    """The body came with a ``Content-Encoding`` the receiver does not read (only ``gzip`` and
    ``deflate`` are); nothing of it was read.

    :param encoding: the encoding, as the request named it.
    """

    def __init__(self, message: str, *, encoding: str) -> None:
        super().__init__(message)
        self.encoding = encoding


class DispatchUnavailableError(YalgaarError):
    """The dispatcher cannot take the events now; nothing of the request was accepted.

    With de-duplication, the events of the request that did run before this was raised are
    marked done, so sending the whole body again runs only the others.

    :param retry_after: seconds after which sending again may succeed (HTTP ``Retry-After``).
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(YalgaarError):
    """The receiver is set up in a way that cannot work; fix the code or the config."""


class YalgaarSecurityWarning(Warning):
    """The endpoint is protected by ``clientKey`` alone, or by nothing at all.

    ``clientKey`` ships inside every client app, so anyone can read it and forge webhooks. Issued
    when a blueprint is registered; the message names the setting that fixes it. It subclasses
    :class:`Warning`, not :class:`YalgaarError`: nothing is refused, a person is told.
    """
