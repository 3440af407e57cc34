"""Configuration values: where each one comes from, and the checks every room shares.

A setting is looked up in one order everywhere (:func:`resolve`): the argument passed in code,
then the ``YALGAAR_*`` key of a config mapping (a Flask app's ``config``; this module never
imports Flask), then the default. Every value, whichever its source, goes through one of the
checks below, which raise :class:`~yalgaar_receiver.ConfigurationError` with a sentence that names
the setting and, for a config key, where the value came from.

:class:`Secrets` holds configured secrets (client keys, URL tokens, Basic credentials) and is the
one place that compares a presented value against them, in constant time.
"""

from __future__ import annotations

import hmac
import math
import typing as t

from .exceptions import ConfigurationError

__all__ = [
    "PREFIX",
    "Secrets",
    "choice",
    "config_key",
    "count",
    "flag",
    "positive_int",
    "positive_number",
    "resolve",
    "text_list",
]

#: Every config key this package reads starts with this.
PREFIX: t.Final = "YALGAAR_"

T = t.TypeVar("T")

#: A check: turns a raw value of the named setting into its typed form, or raises.
Check = t.Callable[[t.Any, str], T]


def config_key(name: str) -> str:
    """The config key of a setting: ``config_key("url_tokens") == "YALGAAR_URL_TOKENS"``."""
    return PREFIX + name.upper()


def resolve(
    name: str,
    argument: object,
    config: t.Mapping[str, t.Any] | None,
    default: T,
    check: Check[T],
) -> T:
    """The value of setting ``name``: ``argument``, else ``config["YALGAAR_<NAME>"]``, else
    ``default``; ``None`` at either of the first two means "not set".

    :param check: validates and converts the value found (the default is returned as it is).
    :raises ConfigurationError: the value found fails ``check``; the message says whether it
        came from the argument or from the config key.
    """
    if argument is not None:
        return check(argument, name)
    key = config_key(name)
    value = None if config is None else config.get(key)
    if value is None:
        return default
    try:
        return check(value, key)
    except ConfigurationError as error:
        raise ConfigurationError(f"{error} (Read from the config key {key}.)") from None


def positive_int(value: object, name: str) -> int:
    """A whole number of 1 or more; digits in a string are read (environment variables are text)."""
    number = _whole(value)
    if number is None or number < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {value!r}.")
    return number


def count(value: object, name: str) -> int:
    """A whole number of 0 or more; digits in a string are read."""
    number = _whole(value)
    if number is None or number < 0:
        raise ConfigurationError(f"{name} must be a whole number, 0 or more, not {value!r}.")
    return number


def _whole(value: object) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    # bool is an int subclass, and True is never meant as 1 here.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def positive_number(value: object, name: str, *, or_zero: bool = False) -> float:
    """A finite number above 0 (seconds, mostly); with ``or_zero``, 0 too."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        number = math.nan
    else:
        number = float(value)
    if not (math.isfinite(number) and (number > 0 or (or_zero and number == 0))):
        expected = "0 or a positive number" if or_zero else "a positive number"
        raise ConfigurationError(f"{name} must be {expected}, not {value!r}.")
    return number


_WORDS: t.Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def flag(value: object, name: str) -> bool:
    """``True`` or ``False``; the words true/false, yes/no and 1/0 in a string are read."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().casefold() in _WORDS:
        return _WORDS[value.strip().casefold()]
    # Anything else is refused, not guessed: "off" or 2 may mean either.
    raise ConfigurationError(f"{name} must be True or False, not {value!r}.")


def choice(value: object, name: str, choices: t.Sequence[str]) -> str:
    """One of ``choices``, exactly as written there."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigurationError(f"{name} must be one of {tuple(choices)}, not {value!r}.")
    return value


def text_list(
    value: object,
    name: str,
    *,
    item: str = "value",
    refuse_text: bool = False,
    trim: bool = True,
) -> tuple[str, ...]:
    """Non-empty strings, trimmed: a list, or one comma-separated string (as a config key from
    an environment variable holds); an empty string means none.

    :param item: what one entry is called in the messages.
    :param refuse_text: refuse one string: passed in code, ``client_keys="ck-1"`` would
        otherwise configure the key it meant and no other, which is right only by luck.
    :param trim: with ``False``, entries are kept exactly as given (an encryption key is its
        characters, spaces included); an entry that is empty or only spaces is still refused.
    """
    if isinstance(value, str):
        if refuse_text:
            raise ConfigurationError(
                f"{name} must be a list, not one string; write {name}=[{'...'!r}]."
            )
        if not value.strip():
            return ()
        entries: t.Iterable[object] = value.split(",")
    elif isinstance(value, t.Iterable) and not isinstance(value, (bytes, t.Mapping)):
        entries = value
    else:
        # Flask's from_prefixed_env() turns FLASK_YALGAAR_URL_TOKENS=123 into the number 123.
        raise ConfigurationError(
            f"{name} must be a list of strings or one comma-separated string, "
            f"not {type(value).__name__} {value!r}."
        )
    result = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigurationError(f"{name} must hold strings; got {type(entry).__name__}.")
        if not entry.strip():
            # Yalgaar's own doc shows "clientKey": "", so an empty key would accept anything.
            raise ConfigurationError(f"{name} holds an empty {item}; remove it.")
        result.append(entry.strip() if trim else entry)
    return tuple(result)


class Secrets:
    """Configured secrets, and the one comparison of a presented value against them.

    :meth:`matches` compares against *every* secret with :func:`hmac.compare_digest`, without
    stopping at the first match, so the time taken tells nothing about which one was close.
    The ``repr`` shows a count, never a secret.
    """

    __slots__ = ("_encoded", "values")

    def __init__(self, values: t.Iterable[str] = ()) -> None:
        #: The secrets, as configured.
        self.values: tuple[str, ...] = tuple(values)
        self._encoded = tuple(_encode(value) for value in self.values)

    def matches(self, given: str) -> bool:
        """Whether ``given`` equals one of the secrets."""
        presented = _encode(given)
        matched = False
        for secret in self._encoded:
            matched |= hmac.compare_digest(presented, secret)
        return matched

    def __bool__(self) -> bool:
        return bool(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secrets) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        return f"<Secrets count={len(self.values)}>"


def _encode(text: str) -> bytes:
    # surrogatepass: whatever a client sent must encode, never raise.
    return text.encode("utf-8", "surrogatepass")
