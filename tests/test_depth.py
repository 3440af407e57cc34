"""The depth check and its shortcuts refuse exactly the bodies nested deeper than the limit.

Short text is walked by a recursion that stops at the limit; longer text by levels, counting the
brackets of the JSON text to stop early (a walk stops once it has met as many containers as there
were brackets). Bodies of every shape, brackets inside strings included, go through both walks
(``loads`` below moves the boundary between them) and are compared with a plain recursive
definition of depth.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yalgaar_receiver import InvalidEnvelopeError, parsing


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


WALKS = ("recursion", "levels")


def loads(text: str, limit: int, walk: str) -> object:
    """``parsing._loads`` with the walk chosen: every text is short or long enough for it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "_SMALL_TEXT", len(text) if walk == "recursion" else len(text) - 1)
        return parsing._loads(text, limit, "The body")


def refused(text: str, limit: int, walk: str = "recursion") -> bool:
    try:
        loads(text, limit, walk)
    except InvalidEnvelopeError as error:
        assert "nested deeper than" in str(error)
        return True
    return False


@settings(max_examples=400, deadline=None)
@given(document=documents, limit=st.integers(min_value=1, max_value=8))
def test_text_is_refused_exactly_when_too_deep(document: object, limit: int) -> None:
    for walk in WALKS:
        assert refused(json.dumps(document), limit, walk) == (depth(document) > limit), walk


@settings(max_examples=200, deadline=None)
@given(document=documents, limit=st.integers(min_value=1, max_value=8))
def test_decoded_json_is_checked_the_same(document: object, limit: int) -> None:
    if isinstance(document, str):
        return  # a str body is JSON text, tested above
    try:
        parsing._decode(document, limit)
        too_deep = False
    except InvalidEnvelopeError:
        too_deep = True
    assert too_deep == (depth(document) > limit)


def _presence_body(items: int, nested: int) -> str:
    value: object = "x"
    for _ in range(nested):
        value = [value]
    data: list[dict[str, object]] = [{"channel": "c", "action": "bind"} for _ in range(items)]
    data[-1]["deep"] = value
    return json.dumps({"items": {"source": "Presence", "clientKey": "k", "data": data}})


@pytest.mark.parametrize("walk", WALKS)
@pytest.mark.parametrize("items", [1, 200])
def test_a_deep_value_in_the_last_item_is_found(items: int, walk: str) -> None:
    # Four levels of envelope, then the item, then the nested lists.
    assert not refused(_presence_body(items, 60), 64, walk)
    assert refused(_presence_body(items, 61), 64, walk)


@pytest.mark.parametrize("walk", WALKS)
def test_brackets_inside_strings_do_not_hide_a_deep_value(walk: str) -> None:
    body = _presence_body(3, 61).replace('"c"', '"]]]]}}}}"')
    assert refused(body, 64, walk)


def test_a_one_item_webhook_is_walked_by_recursion_and_a_batch_by_levels() -> None:
    assert len(_presence_body(1, 0)) <= parsing._SMALL_TEXT < len(_presence_body(200, 0))


def test_the_longest_short_text_nests_too_little_to_reach_the_recursion_limit() -> None:
    # The deepest text the recursion may see, with a limit that does not stop it early.
    half = parsing._SMALL_TEXT // 2
    text = "[" * half + "]" * half
    assert not refused(text, half)
    assert refused(text, half - 1)


# -- duplicate keys: decoded in C and settled by counting colons, else by the exact hook --------

# Objects as lists of pairs, so that a key may come twice; keys and strings hold colons, quotes
# and backslashes, which is what the colon count must not be fooled by.
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
    for walk in WALKS:
        try:
            loads(text, 64, walk)
            refused = False
        except InvalidEnvelopeError as error:
            assert "twice in one object" in str(error)
            refused = True
        assert refused == has_duplicate_keys(text), walk


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
@pytest.mark.parametrize("walk", WALKS)
def test_duplicate_keys_hidden_behind_colons_or_quotes_are_found(text: str, walk: str) -> None:
    with pytest.raises(InvalidEnvelopeError, match="twice in one object"):
        loads(text, 64, walk)
