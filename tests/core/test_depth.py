"""The depth and duplicate-key checks refuse exactly the bodies they should, no others.

Bodies of every shape, brackets and colons inside strings included, go through the public
parser and are compared with plain definitions: the depth of a document, and whether a JSON
object in its text has a key twice.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yalgaar_receiver import InvalidEnvelopeError, parse_envelope


def depth(value: object) -> int:
    """Every array and object is one level; the outermost is level 1; scalars are 0."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


documents = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}ab"\\', max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=30,
)


def refusal(body: object, limit: int) -> str:
    """Why ``parse_envelope`` refused the body, or ``""``."""
    try:
        parse_envelope(body, max_depth=limit)
    except InvalidEnvelopeError as error:
        return str(error)
    return ""


def refused(body: object, limit: int) -> bool:
    """Whether the body was refused for its depth (another refusal, such as "not an envelope",
    is no answer to that)."""
    return "nested deeper than" in refusal(body, limit)


@settings(max_examples=400, deadline=None)
@given(document=documents, limit=st.integers(min_value=1, max_value=8))
def test_text_is_refused_exactly_when_too_deep(document: object, limit: int) -> None:
    assert refused(json.dumps(document), limit) == (depth(document) > limit)


@settings(max_examples=200, deadline=None)
@given(document=documents, limit=st.integers(min_value=1, max_value=8))
def test_decoded_json_is_checked_the_same(document: object, limit: int) -> None:
    if isinstance(document, str):
        return  # a str body is JSON text, tested above
    assert refused(document, limit) == (depth(document) > limit)


def _presence_body(items: int, nested: int) -> str:
    value: object = "x"
    for _ in range(nested):
        value = [value]
    data: list[dict[str, object]] = [{"channel": "c", "action": "bind"} for _ in range(items)]
    data[-1]["deep"] = value
    return json.dumps({"items": {"source": "Presence", "clientKey": "k", "data": data}})


@pytest.mark.parametrize("items", [1, 200])
def test_a_deep_value_in_the_last_item_is_found(items: int) -> None:
    # Four levels of envelope, then the item, then the nested lists.
    assert not refused(_presence_body(items, 60), 64)
    assert refused(_presence_body(items, 61), 64)


def test_brackets_inside_strings_do_not_hide_a_deep_value() -> None:
    body = _presence_body(3, 61).replace('"c"', '"]]]]}}}}"')
    assert refused(body, 64)


def test_a_limit_beyond_the_recursion_limit_still_refuses_cleanly() -> None:
    # A receiver configured with a huge max_depth: the decoder and the check both recurse, and
    # a body beyond what this Python reads or checks is still a refusal, not a RecursionError.
    text = "[" * 5000 + "]" * 5000
    assert refused(text, 800)
    assert refused(text, 100_000)


# -- duplicate keys --------------------------------------------------------------------------

# Objects as lists of pairs, so that a key may come twice; keys and strings hold colons, quotes
# and backslashes.
texts = st.text(alphabet=':"\\ab{[', max_size=4)
pair_documents = st.recursive(
    st.none() | st.integers() | texts,
    lambda children: (
        st.lists(children, max_size=3).map(lambda items: ("list", items))
        | st.lists(
            st.tuples(st.sampled_from(["a", "b", "a:", 'q"', "\\"]), children), max_size=3
        ).map(lambda pairs: ("object", pairs))
    ),
    max_leaves=12,
)


def encode(node: object, spaced: bool) -> str:
    if isinstance(node, tuple) and node[0] == "list":
        return "[" + ",".join(encode(child, spaced) for child in node[1]) + "]"
    if isinstance(node, tuple) and node[0] == "object":
        colon = " : " if spaced else ":"
        members = (json.dumps(key) + colon + encode(value, spaced) for key, value in node[1])
        return "{" + ",".join(members) + "}"
    return json.dumps(node)


def has_duplicate_keys(text: str) -> bool:
    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise KeyError
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=hook)
    except KeyError:
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(document=pair_documents, spaced=st.booleans())
def test_a_key_twice_is_refused_exactly_when_it_is_there(document: object, spaced: bool) -> None:
    text = encode(document, spaced)
    assert ("twice in one object" in refusal(text, 64)) == has_duplicate_keys(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"items": {"data": [{"channel": "c", "channel": "d"}]}}',
        # A colon inside a string makes up for the member the duplicate hides.
        '{"a": 1, "a": 2, "b": "x:y"}',
        '{"a": "\\"", "a": 2}',
    ],
)
def test_duplicate_keys_hidden_behind_colons_or_quotes_are_found(text: str) -> None:
    with pytest.raises(InvalidEnvelopeError, match="twice in one object"):
        parse_envelope(text)
