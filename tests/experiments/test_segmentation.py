"""Segment rules: operators, first match wins, missing or mistyped attributes never match."""

import pytest

from experiments.segmentation import matches, prepared, segment_of


def rule(op, value, attribute="x"):
    return {"attribute": attribute, "op": op, "value": value}


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", "ios", "ios", True),
        ("eq", "ios", "android", False),
        ("eq", 3, 3.0, True),
        ("eq", True, 1, False),
        ("eq", 1, True, False),
        ("eq", "3", 3, False),
        ("ne", "ios", "android", True),
        ("ne", "ios", "ios", False),
        ("ne", "ios", None, False),
        ("lt", 14, 3, True),
        ("lt", 14, 14, False),
        ("lte", 14, 14, True),
        ("gt", 100, 101.5, True),
        ("gte", 100, 99, False),
        ("lt", 14, "3", False),
        ("lt", "2026-01-01", "2025-12-31", True),
        ("lt", 14, True, False),
        ("in", ["fr", "de"], "de", True),
        ("in", ["fr", "de"], "es", False),
        ("in", [1, 2], 2, True),
        ("in", [1, 2], "2", False),
    ],
)
def test_operators(op, value, actual, expected):
    assert matches(rule(op, value), {"x": actual}) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "lte", "gt", "gte", "in"])
def test_missing_attribute_never_matches(op):
    value = ["a"] if op == "in" else 1
    assert matches(rule(op, value), {"other": 1}) is False


def test_first_matching_segment_wins_else_other():
    rules = (
        ("newcomers", rule("lt", 14, "days_since_signup")),
        ("power", rule("gte", 20, "sessions_per_week")),
    )
    assert segment_of(rules, {"days_since_signup": 3, "sessions_per_week": 30}) == "newcomers"
    assert segment_of(rules, {"days_since_signup": 300, "sessions_per_week": 30}) == "power"
    assert segment_of(rules, {"days_since_signup": 300}) == "other"
    assert segment_of(rules, {}) == "other"
    assert segment_of(rules, None) == "other"
    assert segment_of((), {"days_since_signup": 3}) == "other"


@pytest.mark.parametrize(
    "actual",
    [1, 1.0, True, False, 0, "1", "a", None, [1], {"a": 1}, 2.5, "", float("nan")],
)
def test_a_prepared_in_rule_matches_as_the_plain_one(actual):
    """The hot path's hash look-up keeps the rule's meaning: booleans only match booleans,
    numbers equal numbers, strings equal strings; anything unhashable matches nothing."""
    values = [1, "a", False, 2.5, ""]
    plain = rule("in", values)
    assert matches(prepared(plain), {"x": actual}) is matches(plain, {"x": actual})
