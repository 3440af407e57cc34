"""Internal: load mappings with a marshmallow schema, through a loader derived from its fields.

``Schema.load`` spends most of its time on machinery around the fields (an error store, a getter
closure per field, hook and validator look-ups, a validator chain built per call), about thirty
times what ``json.loads`` spends on an item. :class:`Loader` reads, once per schema object, what
each declared field does (``data_key``, ``required``, ``allow_none``, ``load_default``, its
``pre_load`` and ``post_load`` functions, its validators, its messages and its ``_deserialize``)
and applies exactly that to each mapping, the way ``Field.deserialize`` and
``Schema._deserialize`` do. Nothing about any particular field is written here: a field declared on
a subclass is loaded like the stock ones.

The derived path is taken only where it gives what ``Schema.load`` gives: a schema with hooks
(``pre_load``, ``post_load``, ``validates``, ``validates_schema``), with ``unknown`` other than
``EXCLUDE``, with ``partial``, or whose class replaces part of marshmallow's loading machinery is
loaded by ``Schema.load`` itself; so is a field whose class replaces ``deserialize`` (that field
alone), and any value that is not exactly a ``dict``. ``tests/core/test_loader.py`` compares the
two paths on generated items, for the stock schemas and for subclasses.

Imports: the standard library and marshmallow (a leaf beside :mod:`yalgaar_receiver.schemas`).
"""

from __future__ import annotations

import typing as t

from marshmallow import EXCLUDE, Schema, ValidationError, missing
from marshmallow.fields import Field

__all__ = ["Loaded", "Loader"]

#: The marshmallow methods a schema class must not replace for its fields to be read directly.
_MACHINERY: t.Final = (
    "_do_load",
    "_deserialize",
    "_invoke_load_processors",
    "_invoke_field_validators",
    "_invoke_schema_validators",
    "handle_error",
)
#: Likewise per field.
_FIELD_MACHINERY: t.Final = ("deserialize", "_validate_missing", "_validate")

#: What :meth:`Loader.load` gives for one mapping: the loaded data, or the messages.
Loaded = tuple[dict[str, t.Any] | None, dict[str, t.Any] | None]

_MISSING: t.Final = missing
#: How many texts a pure field's memory holds before it starts afresh: the channels, actions
#: and timestamps of a stream repeat (a batch shares a few timestamps; apps use few channels),
#: and junk input cannot grow it.
_REMEMBERED: t.Final = 1024


class _Plan(t.NamedTuple):
    """What one field does, read off the field object once."""

    key: str  # where the value is read from
    attribute: str  # where the loaded value goes
    required: list[t.Any] | None  # the messages when the key is missing, if required
    null: list[t.Any] | None  # the messages when the value is null, if that is refused
    default: t.Any  # the load_default, or a function that makes it
    factory: bool  # default is a function to call
    # _deserialize, or the field's own deserialize; None for a field whose class keeps
    # Field._deserialize, which returns the value as it came (fields.Raw does).
    deserialize: t.Callable[..., t.Any] | None
    # Everything between the null check and the loaded value, for a field that has pre_load or
    # post_load functions or validators (None for the common field that has none).
    rest: t.Callable[[t.Any, dict[str, t.Any]], t.Any] | None
    # The field's own deserialize, for a field whose class replaces it: called as marshmallow
    # calls it, missing and null values included; None for every other field.
    exact: t.Callable[..., t.Any] | None
    # The values read from texts so far, for a field whose value depends on the text alone
    # (``pure``); None for any other field.
    seen: dict[str, t.Any] | None


class Loader:
    """Loads mappings with one schema, giving what ``load(mapping)`` gives.

    :param schema: the schema object.
    :param load: the function whose result this loader reproduces, and which it calls where it
        cannot; ``schema.load`` by default.
    :param derive: ``False`` calls ``load`` for every mapping (marshmallow alone).
    """

    def __init__(
        self,
        schema: Schema,
        load: t.Callable[[t.Any], t.Any] | None = None,
        *,
        derive: bool = True,
    ) -> None:
        self.schema = schema
        self._load: t.Callable[[t.Any], t.Any] = load if load is not None else schema.load
        self._plans = _plans(schema) if derive else None

    @property
    def derived(self) -> bool:
        """Whether mappings are loaded through the derived path."""
        return self._plans is not None

    def load(self, data: object) -> Loaded:
        """Load one mapping: ``(loaded data, None)``, or ``(None, messages)``."""
        plans = self._plans
        if plans is None or type(data) is not dict:
            return self._marshmallow(data)
        get = data.get
        loaded: dict[str, t.Any] = {}
        errors: dict[str, t.Any] | None = None
        # Field.deserialize, step by step, with what it looks up on every call read once.
        for key, attribute, required, null, default, factory, read, rest, exact, seen in plans:
            raw = get(key, _MISSING)
            if seen is not None and type(raw) is str:
                value = seen.get(raw, _MISSING)
                if value is not _MISSING:
                    loaded[attribute] = value
                    continue
            try:
                if exact is not None:
                    value = exact(raw, key, data)
                elif raw is _MISSING:
                    if required is not None:
                        raise ValidationError(required)
                    value = default() if factory else default
                elif raw is None:
                    if null is not None:
                        raise ValidationError(null)
                    value = None
                elif rest is not None:
                    value = rest(raw, data)
                elif read is not None:
                    value = read(raw, key, data)
                else:
                    value = raw
            except ValidationError as error:
                if errors is None:
                    errors = {}
                errors[key] = error.messages
                continue
            if value is not _MISSING:
                loaded[attribute] = value
                if seen is not None and type(raw) is str:
                    if len(seen) >= _REMEMBERED:
                        seen.clear()  # bounded, whatever the input
                    seen[raw] = value
        if errors is not None:
            return None, errors
        return loaded, None

    def _marshmallow(self, data: object) -> Loaded:
        try:
            return self._load(data), None
        except ValidationError as error:
            messages = error.messages
            if not isinstance(messages, dict):
                messages = {"_schema": messages if isinstance(messages, list) else [messages]}
            return None, messages


def _rest(field: Field[t.Any], key: str) -> t.Callable[[t.Any, dict[str, t.Any]], t.Any]:
    """What ``Field.deserialize`` does after its null check, for a field with pre_load or
    post_load functions or validators."""
    pre_load = tuple(field.pre_load)
    post_load = tuple(field.post_load)
    deserialize = field._deserialize
    # _validate chains every validator and reports all their messages, as a load does.
    validate = field._validate if field.validators else None
    allow_none = field.allow_none

    def rest(value: t.Any, data: dict[str, t.Any]) -> t.Any:
        for function in pre_load:
            value = function(value)
        if value is None and allow_none:
            return None
        value = deserialize(value, key, data)
        if validate is not None:
            validate(value)
        for function in post_load:
            value = function(value)
        return value

    return rest


def _plans(schema: Schema) -> tuple[_Plan, ...] | None:
    """Each field's plan, or ``None`` when ``Schema.load`` must load this schema itself."""
    cls = type(schema)
    if (
        any(getattr(cls, name) is not getattr(Schema, name) for name in _MACHINERY)
        or any(schema._hooks.values())
        or schema.unknown != EXCLUDE
        or schema.many
        or schema.partial
        or schema.dict_class is not dict
    ):
        return None
    plans = []
    for name, field in schema.load_fields.items():
        attribute = field.attribute or name
        if "." in attribute:
            return None  # marshmallow nests the value under a dotted attribute
        exact = any(
            getattr(type(field), method) is not getattr(Field, method)
            for method in _FIELD_MACHINERY
        )
        key = field.data_key if field.data_key is not None else name
        plain = not (field.pre_load or field.post_load or field.validators)
        plans.append(
            _Plan(
                key=key,
                attribute=attribute,
                required=_messages(field, "required") if field.required else None,
                null=None if field.allow_none else _messages(field, "null"),
                default=field.load_default,
                factory=callable(field.load_default),
                deserialize=(
                    None if type(field)._deserialize is Field._deserialize else field._deserialize
                ),
                rest=None if plain or exact else _rest(field, key),
                exact=field.deserialize if exact else None,
                seen={} if getattr(field, "pure", False) is True else None,
            )
        )
    return tuple(plans)


def _messages(field: Field[t.Any], key: str) -> list[t.Any]:
    """The messages marshmallow gives for ``key`` (``required`` or ``null``) on ``field``."""
    messages = field.make_error(key).messages
    return messages if isinstance(messages, list) else [messages]
