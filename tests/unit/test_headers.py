"""Unit tests for headers-exchange matching (amqp_broker.broker.headers)."""

from __future__ import annotations

import decimal

import pytest

from amqp_broker.broker.headers import HeadersBinding, parse_binding_arguments, values_equal


def matches(arguments, headers) -> bool:
    return parse_binding_arguments(arguments).matches(headers)


# --- x-match modes -------------------------------------------------------------------------------


def test_parse_returns_a_binding():
    assert isinstance(parse_binding_arguments({"a": 1}), HeadersBinding)
    assert isinstance(parse_binding_arguments(None), HeadersBinding)


@pytest.mark.parametrize("arguments", [{"a": 1, "b": "x"}, {"x-match": "all", "a": 1, "b": "x"}])
def test_all_is_the_default(arguments):
    assert matches(arguments, {"a": 1, "b": "x"})
    assert matches(arguments, {"a": 1, "b": "x", "c": 3})
    assert not matches(arguments, {"a": 1})
    assert not matches(arguments, {"a": 1, "b": "y"})
    assert not matches(arguments, {})
    assert not matches(arguments, None)


def test_any():
    arguments = {"x-match": "any", "a": 1, "b": "x"}
    assert matches(arguments, {"a": 1})
    assert matches(arguments, {"b": "x"})
    assert matches(arguments, {"a": 2, "b": "x"})
    assert not matches(arguments, {"a": 2, "b": "y"})
    assert not matches(arguments, {"c": 1})
    assert not matches(arguments, {})
    assert not matches(arguments, None)


def test_all_with_no_arguments_matches_everything():
    for arguments in (None, {}, {"x-match": "all"}, {"x-match": "all", "x-foo": 1}):
        assert matches(arguments, None)
        assert matches(arguments, {})
        assert matches(arguments, {"anything": 1})


def test_any_with_no_arguments_matches_nothing():
    for arguments in ({"x-match": "any"}, {"x-match": "any", "x-foo": 1}):
        assert not matches(arguments, None)
        assert not matches(arguments, {})
        assert not matches(arguments, {"x-foo": 1})


# --- x- keys -------------------------------------------------------------------------------------


def test_all_and_any_ignore_x_arguments():
    assert matches({"x-foo": "bar", "a": 1}, {"a": 1})
    assert matches({"x-match": "all", "x-foo": "bar", "a": 1}, {"a": 1, "x-foo": "other"})
    assert not matches({"x-match": "any", "x-foo": "bar"}, {"x-foo": "bar"})
    assert not matches({"x-match": "any", "x-foo": "bar", "a": 1}, {"x-foo": "bar"})
    assert matches({"x-match": "any", "x-foo": "bar", "a": 1}, {"a": 1})


def test_all_and_any_ignore_x_headers():
    assert matches({"a": 1}, {"a": 1, "x-trace": "t", "x-death": [{}]})
    assert matches({"x-match": "any", "a": 1}, {"a": 1, "x-trace": "t"})


def test_all_with_x_counts_x_arguments():
    arguments = {"x-match": "all-with-x", "x-foo": "bar", "a": 1}
    assert matches(arguments, {"x-foo": "bar", "a": 1})
    assert not matches(arguments, {"a": 1})
    assert not matches(arguments, {"x-foo": "baz", "a": 1})


def test_any_with_x_counts_x_arguments():
    arguments = {"x-match": "any-with-x", "x-foo": "bar", "a": 1}
    assert matches(arguments, {"x-foo": "bar"})
    assert matches(arguments, {"a": 1})
    assert not matches(arguments, {"x-foo": "baz"})
    assert not matches(arguments, {})


def test_x_match_itself_never_compared():
    # Only x-match left: nothing to compare, so all-with-x matches everything, any-with-x nothing.
    assert matches({"x-match": "all-with-x"}, {})
    assert matches({"x-match": "all-with-x"}, {"x-match": "something else"})
    assert not matches({"x-match": "any-with-x"}, {"x-match": "any-with-x"})
    assert not matches({"x-match": "any-with-x"}, None)


# --- void (presence) -----------------------------------------------------------------------------


def test_void_binding_value_matches_on_presence():
    assert matches({"a": None}, {"a": "anything"})
    assert matches({"a": None}, {"a": None})
    assert matches({"a": None}, {"a": 0})
    assert not matches({"a": None}, {"b": 1})
    assert not matches({"a": None}, None)
    assert matches({"x-match": "any", "a": None, "b": 1}, {"a": False})


def test_void_header_does_not_equal_a_value():
    assert not matches({"a": 1}, {"a": None})
    assert not matches({"a": ""}, {"a": None})


def test_void_x_argument_with_x():
    assert matches({"x-match": "all-with-x", "x-id": None}, {"x-id": 7})
    assert not matches({"x-match": "all-with-x", "x-id": None}, {})
    assert matches({"x-match": "all", "x-id": None}, {})  # ignored without -with-x


# --- value comparison ----------------------------------------------------------------------------


def test_bool_is_not_a_number():
    assert not matches({"a": True}, {"a": 1})
    assert not matches({"a": 1}, {"a": True})
    assert not matches({"a": False}, {"a": 0})
    assert not matches({"a": 0}, {"a": False})
    assert matches({"a": True}, {"a": True})
    assert matches({"a": False}, {"a": False})
    assert not matches({"a": True}, {"a": False})


def test_numbers_compare_by_value():
    assert matches({"a": 1}, {"a": 1})
    assert matches({"a": 1}, {"a": 1.0})  # Erlang's == says 1 == 1.0 too
    assert not matches({"a": 1}, {"a": 2})
    assert not matches({"a": 1}, {"a": "1"})


def test_strings_and_byte_strings():
    assert matches({"a": "x"}, {"a": "x"})
    assert matches({"a": "x"}, {"a": b"x"})  # a longstr and a bytearray are both binaries
    assert matches({"a": b"x"}, {"a": bytearray(b"x")})
    assert matches({"a": "é"}, {"a": "é".encode()})
    assert not matches({"a": "x"}, {"a": "X"})
    assert not matches({"a": ""}, {"a": 0})


def test_decimals_compare_scale_and_digits():
    assert matches({"a": decimal.Decimal("1.5")}, {"a": decimal.Decimal("1.5")})
    assert not matches({"a": decimal.Decimal("1.50")}, {"a": decimal.Decimal("1.5")})
    assert not matches({"a": decimal.Decimal("1")}, {"a": 1})


def test_nested_values():
    assert matches({"a": [1, "x", {"k": True}]}, {"a": [1, "x", {"k": True}]})
    assert not matches({"a": [1]}, {"a": [True]})
    assert not matches({"a": {"k": 1}}, {"a": {"k": True}})
    assert not matches({"a": [1, 2]}, {"a": [1]})
    assert not matches({"a": {"k": 1}}, {"a": {"k": 1, "l": 2}})
    assert not matches({"a": [1]}, {"a": {"0": 1}})


@pytest.mark.parametrize(
    "a, b, equal",
    [
        (True, True, True),
        (True, 1, False),
        (1, True, False),
        (0, False, False),
        (1, 1, True),
        ("s", b"s", True),
        (b"s", "s", True),
        ("s", 115, False),
        (None, None, True),
        ([True], [1], False),
        ((1, 2), [1, 2], True),
    ],
)
def test_values_equal(a, b, equal):
    assert values_equal(a, b) is equal


# --- invalid x-match -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (
            "foo",
            'Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or any-with-x',
        ),
        ("", "Invalid x-match field value <<>>; expected all, any, all-with-x, or any-with-x"),
        (
            "ALL",
            'Invalid x-match field value <<"ALL">>; expected all, any, all-with-x, or any-with-x',
        ),
        (
            'a"b',
            'Invalid x-match field value <<"a\\"b">>; '
            "expected all, any, all-with-x, or any-with-x",
        ),
        (
            "é",
            'Invalid x-match field value <<"é"/utf8>>; '
            "expected all, any, all-with-x, or any-with-x",
        ),
        (
            b"\xff",
            "Invalid x-match field value <<255>>; expected all, any, all-with-x, or any-with-x",
        ),
        (1, "Invalid x-match field type signedint (value 1); expected longstr"),
        (True, "Invalid x-match field type bool (value true); expected longstr"),
        (None, "Invalid x-match field type void (value undefined); expected longstr"),
        (
            bytearray(b"all"),
            'Invalid x-match field type binary (value <<"all">>); expected longstr',
        ),
    ],
)
def test_invalid_x_match(value, text):
    with pytest.raises(ValueError) as excinfo:
        parse_binding_arguments({"x-match": value, "a": 1})
    assert str(excinfo.value) == text


def test_invalid_x_match_without_other_arguments():
    with pytest.raises(ValueError, match=r"^Invalid x-match field value <<\"foo\">>; expected"):
        parse_binding_arguments({"x-match": "foo"})


def test_binding_is_reusable_and_does_not_alias_arguments():
    arguments = {"x-match": "any", "a": 1}
    binding = parse_binding_arguments(arguments)
    arguments["a"] = 2  # the caller's dict changing later does not change the binding
    assert binding.matches({"a": 1})
    assert not binding.matches({"a": 2})
