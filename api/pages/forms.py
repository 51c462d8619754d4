"""The new-experiment form: its text fields turned into the API's experiment body, and the
API's own validation (ExperimentInSchema, then ExperimentSpec) turned back into messages beside
the fields. The form only translates layout (one factor, segment or metric a line); every rule
about what is valid is the schema's or the spec's.
"""

from dataclasses import dataclass, field

import orjson
from marshmallow import ValidationError

from api.errors import flatten_errors
from api.experiments.schemas import ExperimentInSchema
from experiments.errors import InvalidSpec
from experiments.spec import ExperimentSpec

AREAS = ("factors", "variants", "segments", "metrics")
TEXT_FIELDS = ("key", "name", "hypothesis", "allocation", "stickiness", "control", "timezone")
TEXT_FIELDS += ("prior",)
NUMBER_FIELDS = ("attribution_window_hours", "holdout", "relative_threshold_of_caring")
NUMBER_FIELDS += ("threshold_of_caring", "prior_units")
BANDIT_FIELDS = ("update_every_seconds", "min_weight", "min_units_per_arm")
# Every field of the form, in the order its errors are listed.
FIELDS = (
    *TEXT_FIELDS,
    "factors",
    "variants",
    "segments",
    "metrics",
    *NUMBER_FIELDS,
    "quiet_start",
    "quiet_end",
    *(f"bandit_{name}" for name in BANDIT_FIELDS),
)

EXAMPLE = {
    "allocation": "thompson",
    "factors": "timing: morning, evening\ntone: friendly, urgent\nchannel: email, push",
    "segments": "newcomers: days_since_signup lt 14",
    "metrics": "activated binary primary\nunsubscribed binary guardrail 0.002",
    "attribution_window_hours": "72",
    "holdout": "0.05",
}


@dataclass
class Checked:
    """A form checked by the API's rules: its body, the spec if valid, errors per form field."""

    body: dict
    spec: ExperimentSpec | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


def number(text: str):
    """A form's number as JSON would carry it; text that is no number is passed on as is, so
    that the schema names the field ('Not a valid number.')."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def scalar(text: str):
    """A rule's value: a number, true/false, or the text itself."""
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    value = number(text)
    return value


# Lines a text area is read to: beyond any list the API takes (its own limits, far lower, are
# the schema's to state), and few enough that a pasted million lines is refused at once.
MAX_LINES = 1_000


class TooManyLines(ValueError):
    pass


def _lines(text: str) -> list[tuple[int, str]]:
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise TooManyLines(f"At most {MAX_LINES:,} lines.")
    return [(i, line.strip()) for i, line in enumerate(lines, 1) if line.strip()]


def _json(text: str):
    """JSON as the API reads a body (orjson: no lone surrogates, nesting bounded)."""
    return orjson.loads(text)


def to_body(form) -> tuple[dict, dict[str, list[str]]]:
    """The experiment body the form describes, and the lines it could not read."""
    body: dict = {}
    unreadable: dict[str, list[str]] = {}

    def cannot(name: str, message: str) -> None:
        unreadable.setdefault(name, []).append(message)

    for name in AREAS:
        try:
            _lines(form.get(name, ""))
        except TooManyLines as error:
            cannot(name, str(error))
    if unreadable:
        return body, unreadable

    for name in TEXT_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = value
    for name in NUMBER_FIELDS:
        value = form.get(name, "").strip()
        if value:
            body[name] = number(value)

    factors = {}
    for n, line in _lines(form.get("factors", "")):
        name, colon, levels = line.partition(":")
        if not colon:
            cannot("factors", f"Line {n}: write 'factor: level, level'.")
            continue
        if name.strip() in factors:
            cannot("factors", f"Line {n}: the factor '{name.strip()}' is listed twice.")
            continue
        factors[name.strip()] = [x.strip() for x in levels.split(",") if x.strip()]
    if factors:
        body["factors"] = factors

    variants = form.get("variants", "").strip()
    if variants.startswith("["):  # the API's own JSON list, pasted
        try:
            body["variants"] = _json(variants)
        except orjson.JSONDecodeError as error:
            cannot("variants", f"Not valid JSON: {error}.")
    elif variants:
        body["variants"] = [
            variant
            for n, line in _lines(variants)
            if (variant := _variant(n, line, lambda message: cannot("variants", message)))
        ]

    segments = []
    for n, line in _lines(form.get("segments", "")):
        key, colon, rule = line.partition(":")
        words = rule.split(None, 2)
        if not colon or len(words) != 3:
            cannot("segments", f"Line {n}: write 'segment: attribute op value'.")
            continue
        attribute, op, value = words
        if op == "in":
            value = [scalar(v) for v in value.split(",") if v.strip()]
        else:
            value = scalar(value)
        segments.append(
            {"key": key.strip(), "rule": {"attribute": attribute, "op": op, "value": value}}
        )
    if segments:
        body["segments"] = segments

    metrics = []
    for n, line in _lines(form.get("metrics", "")):
        words = line.split()
        if len(words) > 4:
            cannot("metrics", f"Line {n}: write 'metric type role [margin]'.")
            continue
        metric = dict(zip(("key", "type", "role"), words, strict=False))
        if len(words) == 4:
            metric["margin"] = number(words[3])
        metrics.append(metric)
    body["metrics"] = metrics

    start, end = form.get("quiet_start", "").strip(), form.get("quiet_end", "").strip()
    if start or end:
        body["quiet_hours"] = {"start": number(start), "end": number(end)}
    bandit = {}
    for name in BANDIT_FIELDS:
        value = form.get(f"bandit_{name}", "").strip()
        if value:
            bandit[name] = number(value)
    if bandit:
        body["bandit"] = bandit
    return body, unreadable


def _variant(n: int, line: str, cannot) -> dict | None:
    """One line of the variants field: 'key [factor=level …] [weight=share] [{payload JSON}]'."""
    head, brace, payload = line.partition("{")
    words = head.split()
    if not words or "=" in words[0]:
        cannot(f"Line {n}: write 'key [factor=level …] [weight=share] [{{payload}}]'.")
        return None
    variant: dict = {"key": words[0]}
    factors = {}
    for word in words[1:]:
        name, equals, value = word.partition("=")
        if not equals or not name or not value:
            cannot(f"Line {n}: '{word}' is not 'factor=level' or 'weight=share'.")
            return None
        if name == "weight":
            variant["weight"] = number(value)
        elif name in factors:
            cannot(f"Line {n}: the factor '{name}' is given twice.")
            return None
        else:
            factors[name] = value
    if factors:
        variant["factors"] = factors
    if brace:
        try:
            variant["payload"] = _json(brace + payload)
        except orjson.JSONDecodeError as error:
            cannot(f"Line {n}: the payload is not a JSON object ({error}).")
            return None
    return variant


def check(form) -> Checked:
    """Read the form, then validate it exactly as POST /v1/experiments does."""
    body, unreadable = to_body(form)
    if unreadable:
        return Checked(body, errors=unreadable)
    try:
        loaded = ExperimentInSchema().load(body)
    except ValidationError as error:
        return Checked(body, errors=by_form_field(flatten_errors(error.messages)))
    try:
        spec = ExperimentSpec.from_dict(loaded)
    except InvalidSpec as error:
        return Checked(body, errors=by_form_field(error.errors))
    return Checked(loaded, spec=spec)


def by_form_field(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's errors ({"segments.0.rule.op": [...]}) under the form field that holds them,
    each saying which line and part it concerns; anything else under "body"."""
    found: dict[str, list[str]] = {}
    for path, messages in errors.items():
        head, _, rest = path.partition(".")
        if head in ("segments", "metrics", "variants") and rest:
            index, _, part = rest.partition(".")
            where = f"Line {int(index) + 1}" if index.isdigit() else index
            prefix = f"{where}{' (' + part + ')' if part else ''}: "
            target = head
        elif head == "quiet_hours":
            target, prefix = ("quiet_end" if rest == "end" else "quiet_start"), ""
        elif head == "bandit" and rest in BANDIT_FIELDS:
            target, prefix = f"bandit_{rest}", ""
        elif head == "factors" and rest:
            target, prefix = "factors", f"{rest}: "
        elif head in FIELDS:
            target, prefix = head, ""
        else:
            target, prefix = "body", f"{path}: " if path != "body" else ""
        found.setdefault(target, []).extend(prefix + m for m in messages)
    return found
