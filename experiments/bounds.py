"""What Kairos accepts from a client, whichever door it comes through: the characters of an
identifier or a text, the depth and size of free-form JSON, the magnitude of a number, the
calendar range of a date.

Why bounds at all: a value that can be stored but not read back (a payload nested deeper than
the JSON encoder goes, a sum of squares that overflows to infinity, a date that overflows when
moved to UTC, a NUL that PostgreSQL refuses) does not fail once: it fails every later request
that reads it. So every value is checked against these rules before anything is written. The
HTTP edge (the schemas in api/, whose fields api/rules.py builds from these checks, and the
assignment fast lane, which calls them directly) and the domain's own checks
(experiments/spec.py) call the functions here, so each rule is written once.
"""

import math
import re
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

# Identifiers (unit ids, event ids, tags, names of attributes and factors…): printable text.
# str.isprintable() refuses control characters (NUL, newline, ESC…), format characters (the
# bidirectional overrides that make a log line read differently from what it holds),
# separators other than the plain space, surrogates, private-use and unassigned code points.
MAX_IDENTIFIER = 200
IDENTIFIER_RULE = "printable characters only (no control, format or bidi characters)"
# An identifier of the usual length, as a rule's message says it.
IDENTIFIER_SPAN = f"1 to {MAX_IDENTIFIER} characters, {IDENTIFIER_RULE}"
# An assignment id as Kairos stores and answers it; an event may refer to one.
MAX_ASSIGNMENT_ID = 32

# Keys (of experiments, metrics, segments, factors and their levels): slugs. Variant keys also
# take the characters of a generated factorial key (`timing=morning,tone=friendly`).
# Anchored for the OpenAPI document (JSON Schema patterns match anywhere); Python code matches
# them with `fullmatch`, since with `re.match` a `$` also matches before a final newline.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VARIANT_KEY_PATTERN = r"^[a-z0-9][a-z0-9_.,=-]{0,199}$"
SLUG = re.compile(SLUG_PATTERN)
VARIANT_KEY = re.compile(VARIANT_KEY_PATTERN)
SLUG_RULE = "Must be a slug: 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit."
VARIANT_KEY_RULE = "Must be 1-200 of a-z, 0-9 and - _ . , =, starting with a letter or digit."

# Units in an assignment batch, events in an outcome batch: what one request carries at most.
MAX_BATCH = 10_000

# Free text (names, hypotheses, summaries, notes, strings inside payloads): anything but the
# C0/C1 control characters, except tab, newline and carriage return. NUL in particular:
# PostgreSQL stores no NUL in text or JSONB.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
TEXT_RULE = "no control characters other than tab, newline and carriage return"

# Free-form JSON (a variant's payload, a unit's attributes): depth and encoded size. The JSON
# encoder stops at 255 levels; nothing a message template needs comes near 16.
MAX_JSON_DEPTH = 16
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_ATTRIBUTES_BYTES = 4 * 1024
# Numbers inside free-form JSON: within what every JSON client represents exactly (±2^53).
# Beyond it PostgreSQL's JSONB reads a float such as 1e20 back as a 21-digit integer, which
# no 64-bit JSON encoder writes.
MAX_JSON_NUMBER = 2**53

# An outcome's value (revenue, minutes, items): a unit's sum of squares must stay finite and
# its variance meaningful in double precision, so one event is at most a billion in size.
MAX_OUTCOME_VALUE = 1e9

# Ids of stored rows, and counts stored with them: what an SQL `integer` column holds
# (32 bits on PostgreSQL). Offsets into a listing: what a 64-bit SQL integer holds.
MAX_INTEGER = 2**31 - 1
MAX_OFFSET = 2**63 - 1

# Dates and times a client may give (`now`, `occurred_at`, `since`, `until`): a range in
# which moving any offset to UTC, or adding an attribution window, cannot leave the calendar.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MOMENT_RULE = "an ISO 8601 date and time between 2000-01-01 and 2100-01-01 (UTC if no offset)"


def is_identifier(value, max_length: int = MAX_IDENTIFIER) -> bool:
    """A string of 1 to `max_length` printable characters."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()


@lru_cache(maxsize=1024)
def time_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone `name`, or None if there is no such zone (or the name is a path)."""
    if not is_identifier(name, 64) or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def is_slug(value) -> bool:
    return isinstance(value, str) and SLUG.fullmatch(value) is not None


def is_time_zone(name) -> bool:
    return isinstance(name, str) and time_zone(name) is not None


def time_zone_problem(name) -> str:
    """What is said of `name` when it is not a time zone."""
    return f"Unknown time zone '{name}': use an IANA name such as 'Europe/Paris'."


def text_problem(value: str) -> str | None:
    """Why `value` is not acceptable free text, or None."""
    if _CONTROL.search(value):
        return f"Must contain {TEXT_RULE}."
    return None


_FLAT_SCALARS = (int, float, bool, type(None))


def json_problem(value, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `value` (parsed JSON: dicts, lists, strings, numbers, booleans, null) is not
    acceptable free-form JSON, or None. Walked without recursion, so no depth can crash it."""
    if type(value) is dict and _flat_and_fine(value):
        # The usual attributes ({"days_since_signup": 3, "plan": "pro"}), checked on every unit
        # of every batch: one pass over plain values instead of the general walk.
        size = len(orjson.dumps(value))
        return None if size <= max_bytes else _too_large(size, max_bytes)
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                return f"Nested too deep: at most {max_depth} levels."
            if isinstance(node, dict):
                for key, item in node.items():
                    if not is_identifier(key):
                        return f"Keys must be 1 to {MAX_IDENTIFIER} characters, {IDENTIFIER_RULE}."
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            problem = text_problem(node)
            if problem:
                return f"Strings must contain {TEXT_RULE}."
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int | float):
            if not math.isfinite(node) or abs(node) > MAX_JSON_NUMBER:
                return f"Numbers must be finite and within ±2^53 ({MAX_JSON_NUMBER:,})."
        else:
            return f"Not JSON: a value of type {type(node).__name__}."
    size = len(orjson.dumps(value))
    return None if size <= max_bytes else _too_large(size, max_bytes)


def _flat_and_fine(value: dict) -> bool:
    """Whether `value` is an object of identifier keys and scalar values that pass every rule
    (False also when it merely needs the general walk to say why not)."""
    for key, item in value.items():
        if type(key) is not str or not 0 < len(key) <= MAX_IDENTIFIER or not key.isprintable():
            return False
        kind = type(item)
        if kind is str:
            if _CONTROL.search(item):
                return False
        elif kind is int or kind is float:
            if not -MAX_JSON_NUMBER <= item <= MAX_JSON_NUMBER:  # False for NaN too
                return False
        elif kind not in _FLAT_SCALARS:
            return False
    return True


def _too_large(size: int, max_bytes: int) -> str:
    return f"Too large: {size:,} bytes encoded as JSON; at most {max_bytes:,}."


def outcome_value_problem(value) -> str | None:
    """Why `value` is not an acceptable outcome value, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "Must be a number."
    if not math.isfinite(value) or abs(value) > MAX_OUTCOME_VALUE:
        return f"Must be a finite number between -{MAX_OUTCOME_VALUE:g} and {MAX_OUTCOME_VALUE:g}."
    return None


def parse_moment(value) -> datetime:
    """An aware UTC datetime from ISO 8601 text (UTC if no offset); ValueError saying why not."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"Must be {MOMENT_RULE}.")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"Must be {MOMENT_RULE}.") from None
    return check_moment(moment)


def check_moment(moment: datetime) -> datetime:
    """`moment` if it lies in the accepted range; ValueError otherwise."""
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"Must be {MOMENT_RULE}.")
    return moment


# One unit of an assignment request: a single request is one unit and its experiment's key
# (and an admin's `now`); a batch is a list of units.
UNIT_FIELDS = frozenset({"unit_id", "attributes", "timezone"})
UNIT_ID_RULE = f"Required: {IDENTIFIER_SPAN}."


def unit_problems(unit) -> dict[str, list[str]]:
    """What is wrong with one unit ({unit_id, attributes?, timezone?}), by field. Plain Python:
    a batch checks 10,000 units with it (a nested marshmallow schema costs about 100 µs a unit),
    and the fast lane checks a single request with it."""
    if not isinstance(unit, dict):
        return {"_schema": ["Must be an object with a unit_id."]}
    problems = {}
    if not is_identifier(unit.get("unit_id")):
        problems["unit_id"] = [UNIT_ID_RULE]
    if "attributes" in unit:
        attributes = unit["attributes"]
        if not isinstance(attributes, dict):
            problems["attributes"] = ["Must be an object."]
        else:
            problem = json_problem(attributes, max_bytes=MAX_ATTRIBUTES_BYTES)
            if problem:
                problems["attributes"] = [problem]
    timezone = unit.get("timezone")
    if timezone is not None and not is_time_zone(timezone):
        problems["timezone"] = [time_zone_problem(timezone)]
    for name in unit.keys() - UNIT_FIELDS:
        problems[name] = ["Unknown field."]
    return problems
