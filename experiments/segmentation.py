"""Segment rules on request attributes: the first rule that matches names the unit's segment."""

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.vocabulary import OTHER_SEGMENT

_COMPARE = {
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


def matches(rule: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    """Whether a unit's attributes satisfy one rule. A missing attribute, or one of a type the
    rule cannot compare with (a string against a number), never matches — `ne` included."""
    name, op, value = rule["attribute"], rule["op"], rule["value"]
    if name not in attributes:
        return False
    actual = attributes[name]
    if op == "eq":
        return _same(actual, value)
    if op == "ne":
        return actual is not None and not _same(actual, value)
    if op == "in":
        if isinstance(value, ValueSet):
            return value.holds(actual)
        return any(_same(actual, candidate) for candidate in value)
    if not _comparable(actual, value):
        return False
    return _COMPARE[op](actual, value)


class ValueSet:
    """The values of an `in` rule, looked up in one hash probe: a rule may list 1,000 values,
    and every unit of a batch is checked against every rule. Keys keep `_same`'s meaning:
    a boolean matches only a boolean, a number any equal number, a string an equal string."""

    __slots__ = ("keys",)

    def __init__(self, values):
        self.keys = frozenset(_key(v) for v in values)

    def holds(self, actual: Any) -> bool:
        try:
            return _key(actual) in self.keys
        except TypeError:  # an unhashable attribute (a list, an object) equals no scalar
            return False


def _key(value: Any) -> tuple:
    if isinstance(value, bool):
        return ("bool", value)
    if _is_number(value):
        return ("number", value)
    return (type(value).__name__, value)


def prepared(rule: Mapping[str, Any]) -> Mapping[str, Any]:
    """The rule as the hot path reads it (an `in` rule's values as a ValueSet)."""
    if rule.get("op") == "in" and isinstance(rule.get("value"), list):
        return {**rule, "value": ValueSet(rule["value"])}
    return rule


def segment_of(rules: Sequence[tuple[str, Mapping[str, Any]]], attributes: Mapping | None) -> str:
    """The key of the first segment whose rule matches, else `other`."""
    if attributes:
        for key, rule in rules:
            if matches(rule, attributes):
                return key
    return OTHER_SEGMENT


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a boolean attribute must not match a numeric rule value or back.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _comparable(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))
