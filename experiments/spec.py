"""What an experiment is, before it is stored: a validated, normalised specification.

The HTTP edge checks each field's type, range and spelling (experiments/bounds.py);
`ExperimentSpec.from_dict` checks the rules that tie fields together, generates the full
factorial when only factors are given, and fills defaults. Every rule it breaks is reported
against the field it concerns, all at once.
"""

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from experiments import bounds
from experiments.errors import InvalidSpec
from experiments.vocabulary import RESERVED_SEGMENTS, SUPPRESSED_METRIC

MAX_VARIANTS = 256
MAX_ATTRIBUTION_WINDOW_HOURS = 24 * 90
# A variant's `send` instruction: a delay of at most the longest attribution window.
MAX_SEND_DELAY_MINUTES = MAX_ATTRIBUTION_WINDOW_HOURS * 60
MAX_RULE_VALUES = 1000
DEFAULT_TIMEZONE = "UTC"
MAX_HOLDOUT = 0.5
WEIGHT_TOLERANCE = 1e-6
# The expected loss below which choosing the leader is safe enough to conclude, as a share of the
# control's mean on the primary metric: the same meaning at a 0.5% rate, a 20% one, or revenue.
# (The absolute default it replaces, 0.001, was 20% of a 0.5% rate: every A/A test concluded.)
DEFAULT_RELATIVE_THRESHOLD_OF_CARING = 0.01
# `"prior": "learnings"`: the registry's pooled evidence, discounted to this many units per arm.
DEFAULT_PRIOR_UNITS = 100.0


@dataclass(frozen=True)
class SegmentRule:
    """A segment's condition on one request attribute: `attribute op value`."""

    attribute: str
    op: str
    value: Any


@dataclass(frozen=True)
class SegmentSpec:
    """A named segment and the rule that puts a unit in it."""

    key: str
    rule: SegmentRule


@dataclass(frozen=True)
class VariantSpec:
    """A variant: its key, its factor levels (factorial designs), payload and fixed weight."""

    key: str
    factors: dict[str, str]
    payload: dict
    weight: float


@dataclass(frozen=True)
class MetricSpec:
    """A metric: binary or continuous, its role, and a guardrail's margin and direction."""

    key: str
    type: str = "binary"
    role: str = "secondary"
    margin: float | None = None
    higher_is_better: bool = True


@dataclass(frozen=True)
class QuietHours:
    """Local hours during which no message is sent: [start, end), wrapping past midnight."""

    start: int
    end: int


@dataclass(frozen=True)
class BanditSettings:
    """How often a bandit reweights, its floor weight, and the units an arm needs first."""

    update_every_seconds: int = 900
    min_weight: float = 0.01
    min_units_per_arm: int = 100


@dataclass(frozen=True)
class ExperimentSpec:
    key: str
    name: str
    control: str
    variants: tuple[VariantSpec, ...]
    metrics: tuple[MetricSpec, ...]
    factors: tuple[tuple[str, tuple[str, ...]], ...] = ()
    segments: tuple[SegmentSpec, ...] = ()
    hypothesis: str = ""
    allocation: str = "fixed"
    stickiness: str = "unit"
    attribution_window_hours: float = 72.0
    holdout: float = 0.0
    quiet_hours: QuietHours | None = None
    bandit: BanditSettings = field(default_factory=BanditSettings)
    relative_threshold_of_caring: float = DEFAULT_RELATIVE_THRESHOLD_OF_CARING
    # An amount in the primary metric's units instead, if the experiment gives one.
    threshold_of_caring: float | None = None
    prior: str = "default"
    prior_units: float = DEFAULT_PRIOR_UNITS
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentSpec":
        """Build a spec from a body whose fields are well-typed; raise InvalidSpec otherwise."""
        errors: dict[str, list[str]] = {}

        def fail(path: str, message: str) -> None:
            errors.setdefault(path, []).append(message)

        allocation = data.get("allocation", "fixed")
        factors = _factors(data.get("factors") or {}, fail)
        variants = _variants(data.get("variants"), factors, fail)
        if not data.get("factors") and variants:
            factors = _infer_factors(variants)
        if variants is not None:
            variants = _weighted(variants, fail)

        # Without a control, the first variant is the control: for a generated factorial, the
        # first level of every factor, as the factors were listed.
        control = data.get("control") or (variants[0].key if variants else None)
        if variants is not None and control not in {v.key for v in variants}:
            fail("control", f"'{control}' is not one of the variants.")

        timezone = data.get("timezone") or DEFAULT_TIMEZONE
        if not bounds.is_time_zone(timezone):
            fail("timezone", f"Unknown time zone '{timezone}': use an IANA name.")

        segments = _segments(data.get("segments") or [], fail)
        metrics = _metrics(data.get("metrics") or [], fail)

        primary = [m for m in metrics if m.role == "primary"]
        if allocation == "thompson" and primary and primary[0].type != "binary":
            fail("metrics", "Thompson sampling learns from a binary primary metric.")

        quiet_hours = None
        if data.get("quiet_hours") is not None:
            quiet = data["quiet_hours"]
            if quiet["start"] == quiet["end"]:
                fail("quiet_hours", "start and end must differ.")
            quiet_hours = QuietHours(start=quiet["start"], end=quiet["end"])

        bandit = BanditSettings()
        if data.get("bandit") is not None:
            if allocation != "thompson":
                fail("bandit", "Bandit settings apply only to allocation 'thompson'.")
            bandit = BanditSettings(**{**bandit.__dict__, **data["bandit"]})
            if variants and bandit.min_weight * len(variants) >= 1:
                fail(
                    "bandit.min_weight",
                    f"A floor of {bandit.min_weight} for {len(variants)} variants leaves no "
                    "weight to allocate; it must be below 1 / number of variants.",
                )

        if "threshold_of_caring" in data and "relative_threshold_of_caring" in data:
            fail(
                "threshold_of_caring",
                "Give threshold_of_caring (in the metric's units) or relative_threshold_of_caring "
                "(a share of the control's mean), not both.",
            )

        if errors:
            raise InvalidSpec(errors)
        absolute = data.get("threshold_of_caring")
        return cls(
            key=data["key"],
            name=data.get("name") or data["key"],
            hypothesis=data.get("hypothesis") or "",
            allocation=allocation,
            stickiness=data.get("stickiness", "unit"),
            factors=factors,
            variants=tuple(variants),
            control=control,
            segments=segments,
            metrics=metrics,
            attribution_window_hours=float(data.get("attribution_window_hours", 72.0)),
            holdout=float(data.get("holdout", 0.0)),
            quiet_hours=quiet_hours,
            bandit=bandit,
            relative_threshold_of_caring=float(
                data.get("relative_threshold_of_caring", DEFAULT_RELATIVE_THRESHOLD_OF_CARING)
            ),
            threshold_of_caring=None if absolute is None else float(absolute),
            prior=data.get("prior", "default"),
            prior_units=float(data.get("prior_units", DEFAULT_PRIOR_UNITS)),
            timezone=timezone,
        )


def factorial_key(factors: dict[str, str]) -> str:
    """The generated key of a factorial variant: ``timing=morning,tone=friendly``."""
    return ",".join(f"{name}={level}" for name, level in factors.items())


def _factors(raw: dict, fail) -> tuple[tuple[str, tuple[str, ...]], ...]:
    factors = []
    for name, levels in raw.items():
        if len(set(levels)) != len(levels):
            fail(f"factors.{name}", "Levels must be unique.")
        factors.append((name, tuple(levels)))
    return tuple(factors)


def _variants(raw: list | None, factors, fail) -> list[VariantSpec] | None:
    if not raw:
        if not factors:
            fail("variants", "Give the variants, or the factors to generate them from.")
            return None
        combinations = math.prod(len(levels) for _, levels in factors)
        if combinations > MAX_VARIANTS:
            fail(
                "factors",
                f"The full factorial has {combinations} variants; at most "
                f"{MAX_VARIANTS} are allowed.",
            )
            return None
        variants = []
        names = [name for name, _ in factors]
        for levels in itertools.product(*(levels for _, levels in factors)):
            combination = dict(zip(names, levels, strict=True))
            variants.append(VariantSpec(factorial_key(combination), combination, {}, math.nan))
        longest = max((v.key for v in variants), key=len, default="")
        if not bounds.VARIANT_KEY.fullmatch(longest):
            fail(
                "factors",
                f"A generated variant key would be {len(longest)} characters ('{longest[:40]}…'); "
                "at most 200: shorten the factors' names or levels.",
            )
            return None
        if len(variants) < 2:
            fail("factors", "The factors generate fewer than two variants.")
        return variants

    if len(raw) < 2:
        fail("variants", "An experiment needs at least two variants.")
    if len(raw) > MAX_VARIANTS:
        fail("variants", f"At most {MAX_VARIANTS} variants are allowed.")
    levels_of = {name: levels for name, levels in factors}
    seen_keys: set[str] = set()
    seen_combinations: dict[tuple, str] = {}
    names_first = None
    variants = []
    for index, item in enumerate(raw):
        key = item["key"]
        if key in seen_keys:
            fail(f"variants.{index}.key", f"Duplicate variant key '{key}'.")
        seen_keys.add(key)
        given = item.get("factors") or {}
        if factors:
            for name, level in given.items():
                if name not in levels_of:
                    fail(f"variants.{index}.factors.{name}", f"Unknown factor '{name}'.")
                elif level not in levels_of[name]:
                    fail(
                        f"variants.{index}.factors.{name}",
                        f"Unknown level '{level}'; the levels are {', '.join(levels_of[name])}.",
                    )
            missing = [name for name in levels_of if name not in given]
            if missing:
                fail(f"variants.{index}.factors", f"Missing factor(s): {', '.join(missing)}.")
            ordered = {name: given[name] for name in levels_of if name in given}
        else:
            if names_first is None:
                names_first = list(given)
            elif sorted(given) != sorted(names_first):
                fail(
                    f"variants.{index}.factors",
                    "Every variant must set the same factors as the first one "
                    f"({', '.join(names_first) or 'none'}).",
                )
            ordered = {name: given[name] for name in (names_first or []) if name in given}
        if ordered:
            combination = tuple(ordered.items())
            if combination in seen_combinations:
                fail(
                    f"variants.{index}.factors",
                    f"Same factor levels as variant '{seen_combinations[combination]}'.",
                )
            seen_combinations.setdefault(combination, key)
        payload = item.get("payload") or {}
        _check_payload(payload, f"variants.{index}.payload", fail)
        weight = item.get("weight")
        variants.append(VariantSpec(key, ordered, payload, math.nan if weight is None else weight))
    return variants


def _check_payload(payload: Any, path: str, fail) -> None:
    """A payload is bounded free-form JSON; its `send` instruction is one that send_at reads:
    `{"delay_minutes": m}` or `{"local_hour": h, "local_minute"?: m}`."""
    if not isinstance(payload, dict):
        fail(path, "Must be an object.")
        return
    problem = bounds.json_problem(payload, max_bytes=bounds.MAX_PAYLOAD_BYTES)
    if problem:
        fail(path, problem)
        return
    if "send" not in payload:
        return
    send, path = payload["send"], f"{path}.send"
    if not isinstance(send, dict) or not send:
        fail(path, 'Must be {"delay_minutes": m} or {"local_hour": h, "local_minute": m}.')
        return
    if "delay_minutes" in send:
        delay = send["delay_minutes"]
        if send.keys() != {"delay_minutes"}:
            fail(path, "delay_minutes is given alone.")
        elif (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay <= MAX_SEND_DELAY_MINUTES
        ):
            fail(f"{path}.delay_minutes", f"Must be a number from 0 to {MAX_SEND_DELAY_MINUTES}.")
        return
    if not send.keys() <= {"local_hour", "local_minute"} or "local_hour" not in send:
        fail(path, 'Must be {"delay_minutes": m} or {"local_hour": h, "local_minute": m}.')
        return
    for name, top in (("local_hour", 23), ("local_minute", 59)):
        value = send.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            fail(f"{path}.{name}", f"Must be a whole number from 0 to {top}.")


def _infer_factors(variants: list[VariantSpec]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Factors declared only on the variants: levels in order of first appearance."""
    levels: dict[str, list[str]] = {}
    for variant in variants:
        for name, level in variant.factors.items():
            found = levels.setdefault(name, [])
            if level not in found:
                found.append(level)
    return tuple((name, tuple(found)) for name, found in levels.items())


def _weighted(variants: list[VariantSpec], fail) -> list[VariantSpec]:
    """Equal weights when none is given; otherwise every weight, summing to 1."""
    given = [not math.isnan(v.weight) for v in variants]
    if not any(given):
        share = 1.0 / len(variants)
        return [VariantSpec(v.key, v.factors, v.payload, share) for v in variants]
    if not all(given):
        for index, has_weight in enumerate(given):
            if not has_weight:
                fail(f"variants.{index}.weight", "Give every variant a weight, or none.")
        return variants
    total = math.fsum(v.weight for v in variants)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        fail("variants", f"The weights sum to {total:.6g}; they must sum to 1.")
    return variants


def _segments(raw: list, fail) -> tuple[SegmentSpec, ...]:
    segments = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        key = item["key"]
        if key in RESERVED_SEGMENTS:
            fail(f"segments.{index}.key", f"'{key}' is reserved; choose another key.")
        if key in seen:
            fail(f"segments.{index}.key", f"Duplicate segment key '{key}'.")
        seen.add(key)
        rule = item["rule"]
        op, value = rule["op"], rule.get("value")
        path = f"segments.{index}.rule.value"
        problem = None
        if op == "in":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_RULE_VALUES:
                problem = f"Operator 'in' takes a list of 1 to {MAX_RULE_VALUES} values."
            elif not all(_is_scalar(v) for v in value):
                problem = "Operator 'in' takes a list of strings, numbers or booleans."
        elif op in ("lt", "lte", "gt", "gte"):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                problem = f"Operator '{op}' compares with a number or a string."
        elif not _is_scalar(value):
            problem = f"Operator '{op}' compares with a string, a number or a boolean."
        if problem is None:
            problem = bounds.json_problem(value, max_bytes=bounds.MAX_PAYLOAD_BYTES)
        if problem:
            fail(path, problem)
        segments.append(SegmentSpec(key, SegmentRule(rule["attribute"], op, value)))
    return tuple(segments)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _metrics(raw: list, fail) -> tuple[MetricSpec, ...]:
    if not raw:
        fail("metrics", "Declare at least the primary metric.")
        return ()
    metrics = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        key, role = item["key"], item.get("role", "secondary")
        if key in seen:
            fail(f"metrics.{index}.key", f"Duplicate metric key '{key}'.")
        seen.add(key)
        margin = item.get("margin")
        if role == "guardrail" and margin is None:
            fail(f"metrics.{index}.margin", "A guardrail needs a margin (0 or more).")
        if role != "guardrail" and margin is not None:
            fail(f"metrics.{index}.margin", "Only a guardrail metric takes a margin.")
        # Guardrails usually watch harms (unsubscribes, complaints): higher is worse unless said.
        higher_is_better = item.get("higher_is_better", role != "guardrail")
        metrics.append(MetricSpec(key, item.get("type", "binary"), role, margin, higher_is_better))
    primaries = [m for m in metrics if m.role == "primary"]
    if len(primaries) != 1:
        fail("metrics", f"Exactly one metric must have role 'primary' ({len(primaries)} do).")
    if SUPPRESSED_METRIC not in seen:
        # Every experiment counts suppressions (frequency caps, quiet hours, opt-outs) so that an
        # arm that trips them more often is seen doing so.
        metrics.append(MetricSpec(SUPPRESSED_METRIC, "binary", "secondary", None, False))
    return tuple(metrics)
