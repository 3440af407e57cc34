"""Typed payloads: a handler's own marshmallow schema, applied to the message it gets.

``@receiver.on_message(payload=Order())`` registers a handler that gets the event with
``event.payload`` set to what ``Order().load(event.json())`` returned. A message that is not JSON,
or that the schema refuses, never reaches that handler: the receiver reports it (a
:class:`~yalgaar_receiver.Rejection` under ``message``, and the ``payload_rejected`` signal), and
the handlers registered without a schema, or with another one, still get the event. Each schema
loads a message once, however many handlers share it.

Imports: the core before the receiver, and marshmallow.
"""

from __future__ import annotations

import dataclasses
import typing as t

from marshmallow import Schema, ValidationError

from .events import MessageEvent
from .routing import Decorator, Filter, compile_filters
from .schemas import messages_of

__all__ = ["MessageDecorator", "load_payload"]

H = t.TypeVar("H", bound=t.Callable[..., t.Any])
K = t.TypeVar("K")


class MessageDecorator(Decorator[K]):
    """``receiver.on_message``: a :class:`~yalgaar_receiver.routing.Decorator` whose handlers
    may also ask for a payload schema."""

    @t.overload
    def __call__(self, func: H, /) -> H: ...

    @t.overload
    def __call__(
        self,
        *,
        channel: Filter | None = None,
        uuid: Filter | None = None,
        payload: Schema | None = None,
    ) -> t.Callable[[H], H]: ...

    def __call__(
        self,
        func: t.Callable[..., t.Any] | None = None,
        *,
        channel: Filter | None = None,
        uuid: Filter | None = None,
        payload: Schema | None = None,
    ) -> t.Any:
        """Register a handler.

        :param channel: only calls whose channel matches (see
            :data:`~yalgaar_receiver.routing.Filter`).
        :param uuid: only calls whose uuid matches; a missing uuid never matches.
        :param payload: a marshmallow schema instance: the handler gets only the messages it
            loads, with ``event.payload`` set to what it loaded.
        :raises TypeError: a bad filter, or a ``payload`` that is not a schema instance.
        """
        if payload is not None and not isinstance(payload, Schema):
            hint = f" (an instance: {payload.__name__}())" if isinstance(payload, type) else ""
            raise TypeError(
                f"payload must be a marshmallow Schema instance{hint}, not {payload!r}."
            )
        filters = compile_filters({"channel": channel, "uuid": uuid})
        if func is not None:
            return self._registry.add(self.key, func, filters, payload)

        def decorator(handler: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
            return self._registry.add(self.key, handler, filters, payload)

        return decorator


def load_payload(
    schema: Schema, event: MessageEvent
) -> tuple[MessageEvent, None] | tuple[None, dict[str, t.Any]]:
    """``event`` with the payload ``schema`` loaded from its message, or the messages of the
    rejection (under ``message``) when the message is not JSON or the schema refuses it.

    The message is decoded as :meth:`~yalgaar_receiver.MessageEvent.json` decodes it (JSON
    encoded twice is read too). Only a refusal is returned: any other exception the schema
    raises (a bug in a ``post_load``) propagates, so that it fails the handler like any error
    of its own.
    """
    try:
        document = event.json()
    except ValueError as error:
        return None, {
            "message": [f"The message is not JSON text ({error}); the handler's schema reads JSON."]
        }
    try:
        loaded = schema.load(document)
    except ValidationError as error:
        return None, {"message": messages_of(error)}
    return dataclasses.replace(event, payload=loaded), None
