"""The arm-statistics read model: what every statistic of an experiment starts from.

`arm_stats` keeps, per (period, segment, arm, metric), the sufficient statistics the hot paths
count (units, conversions, sum, sum of squares, summed assignment time). This reads them, and
the few other rows the statistics need, and nothing else does:
- the layout (`read_layout`): periods, segments and arms, each cell's weights, the learned prior;
- one or more metrics' cells (`read_cells`), arrays of shape (periods, segments, arms), the
  arms being the variants and, with a holdout, the holdout last; `cell_view` cuts them per
  segment or for `all`; `segment_variant_counts` sums them over periods for the PyMC models;
- the primary metric's rows, the periods' start times and a sample of conversion delays, which
  a bandit's delay-aware counts take (experiments/statistics/bandit_counts.py);
- a segment's learned prior, as stored with the experiment at its creation (`prior_arms`).
Nothing here writes, and nothing here compares arms (experiments/statistics/comparisons.py).
"""

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlmodel import Session

from experiments.lifecycle import segment_keys
from experiments.storage.tables import AllocationPeriod, ArmStats, Experiment, Metric, UnitMetric
from experiments.vocabulary import ALL_SEGMENT, HOLDOUT_ARM, control_index

# The digits of an assignment id that choose the units of a delay sample: six of the random
# ones after its 12 hex digits of time (experiments/assignment/assign.py, `new_ids`), 1-based
# as in SQL.
SAMPLE_DIGITS_FROM, SAMPLE_DIGITS = 13, 6


@dataclass
class Layout:
    """How an experiment's statistics are laid out in arrays, and each cell's weights."""

    periods: list[int]
    segments: list[str]
    arms: list[str]
    control: int
    holdout: int | None
    # (periods, segments, variants): the weights each cell assigned with.
    weights: np.ndarray
    # The experiment's learned prior snapshot, if it asked for one.
    priors: dict | None = None

    @property
    def variants(self) -> int:
        return len(self.arms) - (self.holdout is not None)


@dataclass
class MetricCells:
    """One metric's statistics, each of shape (periods, segments, arms)."""

    units: np.ndarray
    conversions: np.ndarray
    sums: np.ndarray
    squares: np.ndarray


def read_layout(session: Session, experiment: Experiment) -> Layout:
    """The experiment's layout: its periods (period 1 if none opened yet), its segments (`other`
    last), its arms, and the weights each (period, segment) cell assigned with (the declared
    ones where a period gave none)."""
    variants = [v.key for v in experiment.variants]
    segments = segment_keys(experiment)
    arms = variants + ([HOLDOUT_ARM] if experiment.holdout > 0 else [])
    rows = session.execute(
        select(AllocationPeriod.number, AllocationPeriod.weights)
        .where(AllocationPeriod.experiment_id == experiment.id)
        .order_by(AllocationPeriod.number)
    ).all()
    periods = [number for number, _ in rows] or [1]
    declared = np.array([v.weight for v in experiment.variants])
    weights = np.tile(declared, (len(periods), len(segments), 1))
    for p, (_, by_segment) in enumerate(rows):
        for s, name in enumerate(segments):
            given = (by_segment or {}).get(name)
            if given:
                weights[p, s] = [given.get(v, 0.0) for v in variants]
    return Layout(
        periods=periods,
        segments=segments,
        arms=arms,
        control=control_index(experiment),
        holdout=len(variants) if experiment.holdout > 0 else None,
        weights=weights,
        priors=experiment.priors if experiment.prior == "learnings" else None,
    )


def read_cells(
    session: Session, experiment: Experiment, layout: Layout, metrics: set[str]
) -> dict[str, MetricCells]:
    """Each metric's cells, laid out by `layout`; rows outside it (a segment since removed)
    are left out."""
    shape = (len(layout.periods), len(layout.segments), len(layout.arms))
    cells = {
        m: MetricCells(np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape))
        for m in metrics
    }
    p_index = {n: i for i, n in enumerate(layout.periods)}
    s_index = {s: i for i, s in enumerate(layout.segments)}
    a_index = {a: i for i, a in enumerate(layout.arms)}
    rows = session.execute(
        select(
            ArmStats.metric,
            ArmStats.period,
            ArmStats.segment,
            ArmStats.variant,
            ArmStats.units,
            ArmStats.conversions,
            ArmStats.sum,
            ArmStats.sum_squares,
        ).where(ArmStats.experiment_id == experiment.id, ArmStats.metric.in_(metrics))
    ).all()
    for metric, period, segment, arm, units, conversions, total, squares in rows:
        at = (p_index.get(period), s_index.get(segment), a_index.get(arm))
        if None in at:
            continue
        target = cells[metric]
        target.units[at] += units or 0
        target.conversions[at] += conversions or 0
        target.sums[at] += total or 0.0
        target.squares[at] += squares or 0.0
    return cells


def cell_view(layout: Layout, cells: MetricCells, segment: str):
    """(units, conversions, sums, squares, weights) as (cells, arms) arrays for one segment
    (its periods) or for `all` (every period × segment)."""
    arrays = (cells.units, cells.conversions, cells.sums, cells.squares, layout.weights)
    if segment == ALL_SEGMENT:
        return tuple(a.reshape(-1, a.shape[-1]) for a in arrays)
    s = layout.segments.index(segment)
    return tuple(a[:, s, :] for a in arrays)


def segment_variant_counts(
    session: Session, experiment: Experiment, metric: str
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(segments, variants, units, conversions) of a metric, summed over periods, without the
    holdout: what the PyMC models take. Arrays have shape (segments, variants)."""
    layout = read_layout(session, experiment)
    cells = read_cells(session, experiment, layout, {metric})[metric]
    arms = slice(0, layout.variants)
    units = cells.units.sum(axis=0)[:, arms]
    conversions = np.minimum(cells.conversions.sum(axis=0)[:, arms], units)
    return layout.segments, layout.arms[: layout.variants], units, conversions


def prior_arms(priors: dict | None, segment: str, variants: list[str]):
    """(alpha, beta) lists for `variants` in `segment` from the learned prior, or None."""
    if not priors:
        return None
    found = priors["segments"].get(segment) or priors["segments"].get(ALL_SEGMENT)
    if not found or any(v not in found["arms"] for v in variants):
        return None
    return [found["arms"][v][0] for v in variants], [found["arms"][v][1] for v in variants]


def metric_keys(metrics: list[Metric]) -> list[str]:
    return [m.key for m in metrics]


def primary_variant_rows(*, session: Session, experiment_id: int) -> tuple[str, list]:
    """(the primary metric's key, its arm_stats rows without the holdout): each row's period,
    segment, variant, units, conversions and summed assignment time."""
    primary = session.execute(
        select(Metric.key).where(Metric.experiment_id == experiment_id, Metric.role == "primary")
    ).scalar_one()
    rows = session.execute(
        select(
            ArmStats.period,
            ArmStats.segment,
            ArmStats.variant,
            ArmStats.units,
            ArmStats.conversions,
            ArmStats.assigned_seconds,
        ).where(
            ArmStats.experiment_id == experiment_id,
            ArmStats.metric == primary,
            ArmStats.variant != HOLDOUT_ARM,
        )
    ).all()
    return primary, rows


def period_starts(*, session: Session, experiment_id: int) -> dict[int, datetime]:
    """When each of the experiment's allocation periods began, by number."""
    return dict(
        session.execute(
            select(AllocationPeriod.number, AllocationPeriod.started_at).where(
                AllocationPeriod.experiment_id == experiment_id
            )
        ).all()
    )


def conversion_delays(
    *, session: Session, experiment_id: int, metric: str, share: float | None = None
) -> list[tuple[float, datetime]]:
    """(delay in seconds, first conversion time) of the units that converted on `metric`; with
    `share`, of about that share of them, chosen by random digits of the assignment id.

    Choosing by the digits of the id costs a pass over the experiment's unit_metric rows in the
    database (no index serves it), not in Python."""
    query = select(UnitMetric.delay_seconds, UnitMetric.first_at).where(
        UnitMetric.experiment_id == experiment_id,
        UnitMetric.metric == metric,
        UnitMetric.total > 0,
    )
    if share is not None:
        # Ids whose digits fall below share × 16^digits: hex digits of one length sort as
        # their numbers do.
        below = math.ceil(share * 16**SAMPLE_DIGITS)
        digits = func.substr(UnitMetric.assignment_id, SAMPLE_DIGITS_FROM, SAMPLE_DIGITS)
        query = query.where(digits < f"{below:0{SAMPLE_DIGITS}x}")
    return session.execute(query).all()
