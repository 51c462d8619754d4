"""Sufficient statistics rebuilt from raw rows.

The hot paths keep `arm_stats` and `unit_metric` up to date as assignments and outcomes arrive
(experiments/assignment/store.py, experiments/outcomes/store.py). This recomputes both from the
`assignment` and `outcome` tables, by the same counting rule (experiments/statistics/counting.py),
for an audit (`kairos stats check`), a repair (`kairos stats rebuild`), or after a change of the
rules.
"""

import math
from collections import defaultdict

from sqlalchemy import case, delete, func, insert, select
from sqlmodel import Session

from experiments.clock import as_utc
from experiments.statistics.counting import count_change, unit_total
from experiments.storage.tables import ArmStats, Assignment, Experiment, Metric, Outcome, UnitMetric
from experiments.vocabulary import HOLDOUT_ARM

ArmKey = tuple[int, str, str, str]  # (period, segment, variant, metric)


def compute(session: Session, experiment: Experiment) -> tuple[dict, dict]:
    """(arm statistics, unit totals) as the raw rows give them.

    arm statistics: {(period, segment, variant, metric):
                     (units, conversions, sum, sum_squares, assigned_seconds)}
    unit totals: {(assignment_id, metric): (total, events, first_at, delay_seconds)}
    """
    metric_types = dict(
        session.execute(
            select(Metric.key, Metric.type).where(Metric.experiment_id == experiment.id)
        ).all()
    )
    variant = func.coalesce(Assignment.variant, HOLDOUT_ARM)
    seconds: dict[tuple, list] = {}
    for period, segment, arm, assigned_at, units in session.execute(
        select(Assignment.period, Assignment.segment, variant, Assignment.assigned_at, func.count())
        .where(Assignment.experiment_id == experiment.id)
        .group_by(Assignment.period, Assignment.segment, variant, Assignment.assigned_at)
    ).all():
        entry = seconds.setdefault((period, segment, arm), [0, 0.0])
        entry[0] += units
        entry[1] += units * as_utc(assigned_at).timestamp()
    assigned: dict[ArmKey, list] = {
        (period, segment, arm, metric): [units, seconds_sum]
        for (period, segment, arm), (units, seconds_sum) in seconds.items()
        for metric in metric_types
    }

    units: dict[tuple[str, str], tuple] = {}
    counted: dict[ArmKey, list] = defaultdict(lambda: [0, 0.0, 0.0])
    rows = session.execute(
        select(
            Outcome.assignment_id,
            Outcome.metric,
            func.sum(Outcome.value),
            func.sum(case((Outcome.value > 0, 1), else_=0)),
            func.count(),
            func.min(Outcome.occurred_at),
            Assignment.assigned_at,
            Assignment.period,
            Assignment.segment,
            variant,
        )
        .join(Assignment, Assignment.id == Outcome.assignment_id)
        .where(Outcome.experiment_id == experiment.id, Outcome.attributed)
        .group_by(
            Outcome.assignment_id,
            Outcome.metric,
            Assignment.assigned_at,
            Assignment.period,
            Assignment.segment,
            variant,
        )
    ).all()
    for assignment_id, metric, value_sum, positives, events, first, assigned_at, *arm in rows:
        binary = metric_types.get(metric) == "binary"
        total = unit_total(binary, value_sum, positives)
        first = as_utc(first)
        delay = (first - as_utc(assigned_at)).total_seconds()
        units[(assignment_id, metric)] = (total, events, first, delay)
        # All of the unit's events at once: its total moves from nothing to `total`.
        count_change(counted[(*arm, metric)], binary, 0.0, total, 0)
    arms = {key: (n, *counted.get(key, (0, 0.0, 0.0)), t) for key, (n, t) in assigned.items()}
    arms.update((key, (0, c, s, q, 0.0)) for key, (c, s, q) in counted.items() if key not in arms)
    return arms, units


def stored(session: Session, experiment: Experiment) -> tuple[dict, dict]:
    """(arm statistics, unit totals) as the hot paths maintained them; same shapes as compute."""
    arms = {
        (a.period, a.segment, a.variant, a.metric): (
            a.units,
            a.conversions,
            a.sum,
            a.sum_squares,
            a.assigned_seconds,
        )
        for a in session.execute(
            select(ArmStats).where(ArmStats.experiment_id == experiment.id)
        ).scalars()
    }
    units = {
        (u.assignment_id, u.metric): (u.total, u.events, as_utc(u.first_at), u.delay_seconds)
        for u in session.execute(
            select(UnitMetric).where(UnitMetric.experiment_id == experiment.id)
        ).scalars()
    }
    return arms, units


# What double-precision arithmetic may leave of a sum kept by increments, as a share of the
# magnitudes that passed through it (each increment rounds at 1.1e-16 of its size).
ROUNDING = 1e-12


def differences(session: Session, experiment: Experiment, tolerance: float = 1e-6) -> list[str]:
    """Where the maintained statistics differ from a rebuild; empty when they agree.

    Counts must agree exactly. A continuous metric's sum and sum of squares are kept by
    increments (a unit's new total minus its old one), so they carry rounding in proportion to
    the magnitudes that went through them: a unit that reported 1e9 then −1e9 leaves a sum of
    squares exact only to about 1e2. Each arm's sums are compared within that."""
    built_arms, built_units = compute(session, experiment)
    kept_arms, kept_units = stored(session, experiment)
    scale = _magnitudes(session, experiment)
    found = []
    for key in sorted(set(built_arms) | set(kept_arms), key=str):
        empty = (0, 0, 0.0, 0.0, 0.0)
        a, b = built_arms.get(key, empty), kept_arms.get(key, empty)
        sums, squares = scale.get(key, (0.0, 0.0))
        slack = (0, 0, ROUNDING * sums, ROUNDING * squares, 0)
        if not _finite(a) or not _finite(b):
            found.append(f"arm {key}: not finite: raw rows give {a}, stored {b}")
        elif any(
            abs(x - y) > tolerance * max(1.0, abs(x)) + extra
            for x, y, extra in zip(a, b, slack, strict=True)
        ):
            found.append(f"arm {key}: raw rows give {a}, stored {b}")
    for key in sorted(set(built_units) | set(kept_units)):
        a, b = built_units.get(key), kept_units.get(key)
        if a is None or b is None:
            found.append(f"unit {key}: raw rows give {a}, stored {b}")
        elif not _finite(a[:2]) or not _finite(b[:2]):
            found.append(f"unit {key}: not finite: raw rows give {a}, stored {b}")
        elif abs(a[0] - b[0]) > tolerance * max(1.0, abs(a[0])) or a[1] != b[1]:
            found.append(f"unit {key}: raw rows give {a}, stored {b}")
    return found


def _magnitudes(session: Session, experiment: Experiment) -> dict[ArmKey, tuple[float, float]]:
    """Per arm, Σ over units of Σ|value| and of (Σ|value|)²: bounds on the magnitudes its sum
    and sum of squares passed through."""
    variant = func.coalesce(Assignment.variant, HOLDOUT_ARM)
    per_unit = (
        select(
            Assignment.period,
            Assignment.segment,
            variant.label("variant"),
            Outcome.metric,
            func.sum(func.abs(Outcome.value)).label("magnitude"),
        )
        .join(Assignment, Assignment.id == Outcome.assignment_id)
        .where(Outcome.experiment_id == experiment.id, Outcome.attributed)
        .group_by(
            Outcome.assignment_id, Assignment.period, Assignment.segment, variant, Outcome.metric
        )
    )
    scale: dict[ArmKey, tuple[float, float]] = {}
    for period, segment, arm, metric, magnitude in session.execute(per_unit).all():
        sums, squares = scale.get((period, segment, arm, metric), (0.0, 0.0))
        magnitude = float(magnitude or 0.0)
        scale[(period, segment, arm, metric)] = (sums + magnitude, squares + magnitude**2)
    return scale


def _finite(numbers) -> bool:
    """Every number is there and finite (SQLite stores a NaN as NULL)."""
    return all(x is not None and math.isfinite(x) for x in numbers)


def rebuild(session: Session, experiment: Experiment) -> int:
    """Replace the experiment's statistics with those of its raw rows; the arms written."""
    arms, units = compute(session, experiment)
    session.execute(delete(UnitMetric).where(UnitMetric.experiment_id == experiment.id))
    session.execute(delete(ArmStats).where(ArmStats.experiment_id == experiment.id))
    if units:
        session.execute(
            insert(UnitMetric),
            [
                {
                    "assignment_id": assignment_id,
                    "experiment_id": experiment.id,
                    "metric": metric,
                    "total": total,
                    "events": events,
                    "first_at": first,
                    "delay_seconds": delay,
                }
                for (assignment_id, metric), (total, events, first, delay) in units.items()
            ],
        )
    if arms:
        session.execute(
            insert(ArmStats),
            [
                {
                    "experiment_id": experiment.id,
                    "period": period,
                    "segment": segment,
                    "variant": variant,
                    "metric": metric,
                    "units": n,
                    "conversions": c,
                    "sum": s,
                    "sum_squares": q,
                    "assigned_seconds": t,
                }
                for (period, segment, variant, metric), (n, c, s, q, t) in arms.items()
            ],
        )
    return len(arms)
