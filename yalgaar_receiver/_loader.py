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


class _Plan(t.NamedTuple):
    """What one field does, read off the field object once."""

    attribute: str  # where the loaded value goes
    key: str  # where the value is read from
    field: Field[t.Any]
    required: list[t.Any] | None  # the messages when the key is missing, if required
    null: list[t.Any] | None  # the messages when the value is null, if that is refused
    default: t.Any
    pre_load: tuple[t.Callable[[t.Any], t.Any], ...]
    post_load: tuple[t.Callable[[t.Any], t.Any], ...]
    deserialize: t.Callable[..., t.Any]
    validate: t.Callable[[t.Any], t.Any] | None
    exact: bool  # the field replaces deserialize: call it as marshmallow would
    pure: bool  # equal texts give equal values: read once per batch


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

    def memo(self) -> list[dict[str, t.Any] | None]:
        """Fresh per-batch memory for :meth:`load`: one dict per field that may reuse a value."""
        return [({} if plan.pure else None) for plan in self._plans or ()]

    def load(self, data: object, memo: list[dict[str, t.Any] | None] | None = None) -> Loaded:
        """Load one mapping: ``(loaded data, None)``, or ``(None, messages)``.

        :param memo: from :meth:`memo`, shared by the mappings of one batch.
        """
        plans = self._plans
        if plans is None or type(data) is not dict:
            return self._marshmallow(data)
        if memo is None:
            memo = self.memo()
        loaded: dict[str, t.Any] = {}
        errors: dict[str, t.Any] | None = None
        for plan, seen in zip(plans, memo, strict=True):
            raw = data.get(plan.key, missing)
            if seen is not None and type(raw) is str:
                value = seen.get(raw, missing)
                if value is not missing:
                    loaded[plan.attribute] = value
                    continue
            try:
                value = _field_value(plan, raw, data)
            except ValidationError as error:
                if errors is None:
                    errors = {}
                errors[plan.key] = error.messages
                continue
            if value is not missing:
                loaded[plan.attribute] = value
                if seen is not None and type(raw) is str:
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


def _field_value(plan: _Plan, raw: object, data: dict[str, t.Any]) -> t.Any:
    """``Field.deserialize``, step by step, with what it looks up every time read once."""
    if plan.exact:
        return plan.deserialize(raw, plan.key, data)
    if raw is missing:
        if plan.required is not None:
            raise ValidationError(plan.required)
        default = plan.default
        return default() if callable(default) else default
    if raw is None and plan.null is not None:
        raise ValidationError(plan.null)
    value = raw
    for function in plan.pre_load:
        value = function(value)
    if value is None and plan.null is None:
        return None
    value = plan.deserialize(value, plan.key, data)
    if plan.validate is not None:
        plan.validate(value)
    for function in plan.post_load:
        value = function(value)
    return value


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
        plans.append(
            _Plan(
                attribute=attribute,
                key=field.data_key if field.data_key is not None else name,
                field=field,
                required=_messages(field, "required") if field.required else None,
                null=None if field.allow_none else _messages(field, "null"),
                default=field.load_default,
                pre_load=tuple(field.pre_load),
                post_load=tuple(field.post_load),
                deserialize=field.deserialize if exact else field._deserialize,
                # _validate chains every validator and reports all their messages, as a load
                # does; a field without validators skips it.
                validate=field._validate if field.validators else None,
                exact=exact,
                pure=getattr(field, "pure", False) is True,
            )
        )
    return tuple(plans)


def _messages(field: Field[t.Any], key: str) -> list[t.Any]:
    """The messages marshmallow gives for ``key`` (``required`` or ``null``) on ``field``."""
    messages = field.make_error(key).messages
    return messages if isinstance(messages, list) else [messages]
