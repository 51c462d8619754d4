"""Test factories for delayed conversions: simulated units whose conversions arrive hours after
their assignment, and their storage as the hot paths would have left it by a given time (arm
statistics per allocation period, one unit_metric row per conversion seen, in arrival order)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert, update
from sqlmodel import Session

from experiments.assignment.assign import new_ids
from experiments.lifecycle import initial_weights
from experiments.storage.tables import (
    AllocationPeriod,
    ArmStats,
    Assignment,
    Experiment,
    UnitMetric,
)
from experiments.vocabulary import OTHER_SEGMENT

HOUR = 3600.0


def truncated_exponential_cdf(t, mean: float, window: float) -> np.ndarray:
    """P(delay ≤ t | a conversion within the window), delays exponential of this mean."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, window)
    return np.expm1(-t / mean) / np.expm1(-window / mean)


def truncated_exponential_delays(rng, n: int, mean: float, window: float) -> np.ndarray:
    """n delays, exponential of this mean, conditioned on falling within the window."""
    return -mean * np.log1p(rng.random(n) * np.expm1(-window / mean))


@dataclass(frozen=True)
class DelayedUnits:
    """Units assigned over `hours`, in order; times in hours from the start."""

    hours: float
    assigned_at: np.ndarray
    arm: np.ndarray  # index of the variant
    converts: np.ndarray  # converts within the window, sooner or later
    delay: np.ndarray  # hours from assignment to that conversion

    def seen(self, now: float) -> np.ndarray:
        """Conversions that have arrived by `now`."""
        return self.converts & (self.assigned_at + self.delay <= now)


def aa_units(
    rng,
    *,
    days: float,
    units_per_day: float,
    rate: float,
    mean_delay_hours: float,
    window_hours: float,
    favoured_share_last_day: float,
) -> DelayedUnits:
    """An A/A test of two arms converting at the same rate: units arrive evenly, split 50/50
    until the last day, in which arm 0 gets `favoured_share_last_day` of them (what a bandit
    does to an arm it has come to favour)."""
    hours = days * 24
    n = rng.poisson(units_per_day * days)
    assigned_at = np.sort(rng.uniform(0.0, hours, n))
    share = np.where(assigned_at >= hours - 24, favoured_share_last_day, 0.5)
    arm = (rng.random(n) >= share).astype(int)
    converts = rng.random(n) < rate
    delay = truncated_exponential_delays(rng, n, mean_delay_hours, window_hours)
    return DelayedUnits(hours, assigned_at, arm, converts, delay)


def assignment_ids(rng, n: int) -> list[str]:
    """n assignment ids laid out as `new_ids` lays them out, their random digits from `rng`."""
    prefix = new_ids(1)[0][:12]
    digits = rng.bytes(10 * n).hex()
    return [prefix + digits[i : i + 20] for i in range(0, 20 * n, 20)]


def store_delayed_units(
    session: Session,
    rng,
    *,
    experiment: Experiment,
    units: DelayedUnits,
    start: datetime,
    period_hours: float,
    metric: str,
) -> datetime:
    """Store what the hot paths would hold at the end of `units.hours`, a period opened every
    `period_hours` from `start` (the experiment's period 1). Only converted units get an
    assignment row, its id's random digits drawn from `rng`: reweights read the others
    through their arm statistics alone. Returns the end, the `now` to reweight at."""
    variants = [v.key for v in experiment.variants]
    period = (units.assigned_at // period_hours).astype(int) + 1
    periods = int(period.max())
    for number in range(2, periods + 1):
        session.add(
            AllocationPeriod(
                experiment_id=experiment.id,
                number=number,
                seed=number,
                weights=initial_weights(experiment),
                started_at=start + timedelta(hours=(number - 1) * period_hours),
            )
        )
    session.execute(
        update(Experiment).where(Experiment.id == experiment.id).values(current_period=periods)
    )

    now = units.hours
    seen = units.seen(now)
    epoch = start.timestamp()
    cells = np.ravel_multi_index((period - 1, units.arm), (periods, len(variants)))
    size = periods * len(variants)
    counts = np.bincount(cells, minlength=size)
    conversions = np.bincount(cells, weights=seen, minlength=size)
    assigned_seconds = np.bincount(cells, weights=epoch + units.assigned_at * HOUR, minlength=size)
    session.execute(
        insert(ArmStats),
        [
            {
                "experiment_id": experiment.id,
                "period": int(cell // len(variants)) + 1,
                "segment": OTHER_SEGMENT,
                "variant": variants[cell % len(variants)],
                "metric": metric,
                "units": int(counts[cell]),
                "conversions": int(conversions[cell]),
                "assigned_seconds": float(assigned_seconds[cell]),
            }
            for cell in np.flatnonzero(counts)
        ],
    )

    # Converted units, in the order their conversions arrived (unit_metric ids grow with it).
    converted = np.flatnonzero(seen)
    converted = converted[np.argsort(units.assigned_at[converted] + units.delay[converted])]
    ids = assignment_ids(rng, converted.size)
    assigned = [start + timedelta(hours=float(units.assigned_at[i])) for i in converted]
    session.execute(
        insert(Assignment),
        [
            {
                "id": assignment_id,
                "experiment_id": experiment.id,
                "unit_id": assignment_id,
                "sticky_unit": assignment_id,
                "variant": variants[units.arm[i]],
                "segment": OTHER_SEGMENT,
                "period": int(period[i]),
                "propensity": 0.5,
                "assigned_at": at,
            }
            for assignment_id, i, at in zip(ids, converted, assigned, strict=True)
        ],
    )
    session.execute(
        insert(UnitMetric),
        [
            {
                "assignment_id": assignment_id,
                "experiment_id": experiment.id,
                "metric": metric,
                "total": 1.0,
                "events": 1,
                "first_at": at + timedelta(hours=float(units.delay[i])),
                "delay_seconds": float(units.delay[i]) * HOUR,
            }
            for assignment_id, i, at in zip(ids, converted, assigned, strict=True)
        ],
    )
    return start + timedelta(hours=now)
