"""The primary metric's counts as a bandit reads them: per segment and variant, successes,
trials, and delay-aware trials (a unit assigned an hour ago is not yet a failure).

Read from the arm-statistics read model (experiments/statistics/cells.py) and shaped for the
weights (experiments/allocation/weights.py); the delay distribution itself is bandits/delays.py.
"""

from datetime import datetime

import numpy as np
from sqlmodel import Session

from bandits.delays import DelayDistribution, failure_shares
from experiments.clock import as_utc
from experiments.snapshot import ExperimentSnapshot
from experiments.statistics.cells import conversion_delays, period_starts, primary_variant_rows

# About how many conversions the delay distribution is fitted from: plenty for its shape, and
# few enough to read at every reweight.
DELAY_SAMPLE = 20_000


def arm_counts(
    *, session: Session, snapshot: ExperimentSnapshot, segments: list[str], now: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(successes, trials, delay-aware trials) of the primary metric, each of shape
    (segments, variants), over all periods.

    Delay-aware trials count a unit that has not converted as part of a trial, by G(age), G
    being the share of conversions that arrive by that age (bandits/delays.py): a unit
    assigned an hour ago is not yet a failure. A row's units are taken as assigned evenly
    about their mean time (which arm_stats keeps, so no assignment row is read), as far as
    their allocation period reaches on the nearer side, and G is averaged over their ages.
    Each segment's silent units count as their failure shares at its rate (`failure_shares`).
    """
    primary, found = primary_variant_rows(session=session, experiment_id=snapshot.experiment_id)
    s_index = {s: i for i, s in enumerate(segments)}
    rows = [
        row for row in found if row.segment in s_index and row.variant in snapshot.variant_index
    ]
    units = np.array([row.units or 0 for row in rows], dtype=float)
    conversions = np.array([row.conversions or 0 for row in rows], dtype=float)
    delay = delay_distribution(
        session=session,
        snapshot=snapshot,
        metric=primary,
        now=now,
        conversions=int(conversions.sum()),
    )
    youngest, oldest = _age_ranges(session, snapshot, rows, now, delay.window_seconds)
    arrived = delay.mean_cdf(youngest, oldest)
    segment = np.array([s_index[row.segment] for row in rows], dtype=int)
    arm = np.array([snapshot.variant_index[row.variant] for row in rows], dtype=int)
    shares = np.zeros(len(rows))
    for i in np.unique(segment):  # silent units' shares of a failure, from each segment's rate
        mine = segment == i
        shares[mine] = failure_shares(units[mine], conversions[mine], arrived[mine])
    successes = np.zeros((len(segments), len(snapshot.variants)))
    trials = np.zeros_like(successes)
    effective = np.zeros_like(successes)
    np.add.at(successes, (segment, arm), conversions)
    np.add.at(trials, (segment, arm), units)
    np.add.at(effective, (segment, arm), conversions + (units - conversions) * shares)
    return successes, trials, effective


def _age_ranges(
    session: Session, snapshot: ExperimentSnapshot, rows: list, now: datetime, window: float
) -> tuple[np.ndarray, np.ndarray]:
    """(youngest, oldest) age of each arm_stats row's units, in seconds at `now`.

    A row knows its units' mean assignment time, not their spread. They are taken as spread
    evenly about it, as far as their period reaches on the nearer side (a period ends where
    the next begins; the current one at `now`): exact for steady traffic. Taking all at the
    mean age instead read the rate of a day-long period 10% low while its windows were open
    (delays of mean 12 h). A mean outside its period (a backfill: periods are a sequence, not
    a timeline) leaves the units at their mean age."""
    begins = period_starts(session=session, experiment_id=snapshot.experiment_id)
    clock = now.timestamp()
    begins = {number: as_utc(at).timestamp() for number, at in begins.items()}
    units = np.array([row.units or 0 for row in rows], dtype=float)
    assigned = np.array([row.assigned_seconds or 0.0 for row in rows], dtype=float)
    mean = np.divide(assigned, units, out=np.full(len(rows), clock - window), where=units > 0)
    begin = np.array([begins.get(row.period, np.inf) for row in rows], dtype=float)
    end = np.array([begins.get(row.period + 1, clock) for row in rows], dtype=float)
    inside = (begin <= mean) & (mean <= end)
    half = np.where(inside, np.minimum(mean - begin, end - mean), 0.0)
    youngest = np.maximum(0.0, clock - mean - half)
    return youngest, np.maximum(youngest, clock - mean + half)


def delay_distribution(
    *, session: Session, snapshot: ExperimentSnapshot, metric: str, now: datetime, conversions: int
) -> DelayDistribution:
    """The metric's delay distribution, fitted from the conversions of a random share of the
    units, about DELAY_SAMPLE conversions of the `conversions` seen so far.

    The share is chosen at assignment, by random digits of the assignment id, so a sampled
    conversion was seen only because its delay was at most its unit's age: the one truncation
    the Lynden-Bell estimator corrects for. The latest conversions, which this read before,
    are chosen on conversion time instead: a unit assigned two days ago was among them only if
    it converted late, and with exponential delays of mean 12 h the fit put G(12 h) at 0.44
    (truth 0.63) at 10,000 conversions a day and 0.09 at 20,000, so the arms given the most
    units lately looked best.
    """
    sampled = conversion_delays(
        session=session,
        experiment_id=snapshot.experiment_id,
        metric=metric,
        share=DELAY_SAMPLE / conversions if conversions > DELAY_SAMPLE else None,
    )
    delays, ages = [], []
    for delay, first_at in sampled:
        age = (now - as_utc(first_at)).total_seconds() + delay  # now − assigned_at
        if age >= delay:  # seen by `now` (a simulated clock may run behind the events)
            delays.append(delay)
            ages.append(age)
    return DelayDistribution.fit(delays, ages, snapshot.attribution_window_hours * 3600)
