"""What the hot paths (assignment, outcomes, allocation) need to know about an experiment,
loaded once and cached for a moment.

The hot path must not read five tables per request. An `ExperimentSnapshot` is an immutable
copy of an experiment, its variants, segments, metrics and current allocation period;
`SnapshotCache` keeps it per process for `ttl` seconds. On the real clock staleness is safe:
an assignment records the period and weight it actually used, and anything that changes state
(a reweight claimed elsewhere, a pause) is re-checked in SQL or seen within `ttl`. A simulated
clock is not: it runs days in a second of real time, so its requests re-check the stamp every
time (`revalidate`).
"""

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from experiments.clock import as_utc
from experiments.segmentation import prepared
from experiments.spec import QuietHours
from experiments.storage.database import Database
from experiments.storage.repository import get_experiment
from experiments.storage.tables import AllocationPeriod, Experiment
from experiments.vocabulary import OTHER_SEGMENT


@dataclass(frozen=True)
class VariantInfo:
    key: str
    factors: dict
    payload: dict


@dataclass(frozen=True)
class SegmentWeights:
    """One segment's weights in a period, aligned with ExperimentSnapshot.variants (plain lists:
    the hot path picks one unit at a time, where numpy's per-call overhead dominates)."""

    weights: list[float]
    cumulative: list[float]


@dataclass(frozen=True)
class ExperimentSnapshot:
    experiment_id: int
    key: str
    status: str
    allocation: str
    stickiness: str
    control: str
    winner: str | None
    holdout: float
    holdout_seed: int
    quiet_hours: QuietHours | None
    timezone: str
    update_every_seconds: int
    min_weight: float
    min_units_per_arm: int
    next_reweight_at: datetime | None
    variants: tuple[VariantInfo, ...]
    variant_index: dict[str, int]
    segment_rules: tuple[tuple[str, dict], ...]
    metrics: tuple[str, ...]
    metric_types: dict[str, str]
    attribution_window_hours: float
    period: int
    period_seed: int
    period_started_at: datetime | None
    period_weights: dict[str, SegmentWeights]

    def weights_of(self, segment: str) -> SegmentWeights:
        return self.period_weights.get(segment) or self.period_weights[OTHER_SEGMENT]

    def variant(self, key: str) -> VariantInfo:
        return self.variants[self.variant_index[key]]


# The snapshot's fields that are the experiment row's own, as stored.
AS_STORED = (
    "key",
    "status",
    "allocation",
    "stickiness",
    "control",
    "winner",
    "holdout",
    "holdout_seed",
    "timezone",
    "update_every_seconds",
    "min_weight",
    "min_units_per_arm",
    "next_reweight_at",
    "attribution_window_hours",
)


def load_snapshot(*, session: Session, key: str) -> ExperimentSnapshot:
    experiment = get_experiment(session=session, key=key)
    period = None
    if experiment.current_period:
        period = session.exec(
            select(AllocationPeriod).where(
                AllocationPeriod.experiment_id == experiment.id,
                AllocationPeriod.number == experiment.current_period,
            )
        ).first()
    return build_snapshot(experiment, period)


def build_snapshot(experiment: Experiment, period: AllocationPeriod | None) -> ExperimentSnapshot:
    variants = tuple(VariantInfo(v.key, v.factors, v.payload) for v in experiment.variants)
    index = {v.key: i for i, v in enumerate(variants)}
    declared = np.array([v.weight for v in experiment.variants], dtype=float)
    stored = period.weights if period else {}
    period_weights = {}
    for segment in [s.key for s in experiment.segments] + [OTHER_SEGMENT]:
        weights = declared
        if segment in stored:
            weights = np.array([stored[segment].get(v.key, 0.0) for v in variants], dtype=float)
        weights = weights / weights.sum()
        period_weights[segment] = SegmentWeights(
            [float(w) for w in weights], [float(c) for c in np.cumsum(weights)]
        )
    quiet = None
    if experiment.quiet_hours_start is not None:
        quiet = QuietHours(experiment.quiet_hours_start, experiment.quiet_hours_end)
    return ExperimentSnapshot(
        experiment_id=experiment.id,
        **{name: getattr(experiment, name) for name in AS_STORED},
        quiet_hours=quiet,
        variants=variants,
        variant_index=index,
        segment_rules=tuple((s.key, prepared(s.rule)) for s in experiment.segments),
        metrics=tuple(m.key for m in experiment.metrics),
        metric_types={m.key: m.type for m in experiment.metrics},
        period=period.number if period else 0,
        period_seed=period.seed if period else 0,
        period_started_at=as_utc(period.started_at) if period else None,
        period_weights=period_weights,
    )


class SnapshotCache:
    """Snapshots per experiment key. After `ttl` seconds (0: at every use) an entry is checked
    against the experiment's row with one small query, and rebuilt only if the row changed.

    Why: rebuilding an ExperimentSnapshot (the experiment with its variants, segments, metrics
    and period) takes milliseconds of Python while holding the GIL; once a second per worker it
    showed in the p99 latency of every request in flight. The stamp covers everything that can
    change while an experiment runs: status, winner, current period (a reweight), the next reweight
    time and `updated_at`; variants, segments and metrics never change after creation.
    """

    def __init__(self, ttl: float = 1.0):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, ExperimentSnapshot, tuple]] = {}
        self._lock = threading.Lock()

    def get(self, *, database: Database, key: str, revalidate: bool = False) -> ExperimentSnapshot:
        """The experiment's snapshot; `revalidate`: check the stamp whatever the entry's age.

        Requests on a simulated clock (an admin's `now`) revalidate: seconds of real time are
        days of theirs, and a reweight made before their `now` on another node must show. It
        costs them the one indexed look-up; requests on the real clock keep the `ttl`.
        """
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and not revalidate and now - entry[0] < self.ttl:
            return entry[1]
        stamp = _stamp(database, key)  # before loading: a change meanwhile shows next time
        if entry is not None and stamp == entry[2]:
            with self._lock:
                self._entries[key] = (now, entry[1], stamp)
            return entry[1]
        with database.session() as session:
            snapshot = load_snapshot(session=session, key=key)
        with self._lock:
            self._entries[key] = (now, snapshot, stamp)
        return snapshot

    def invalidate(self, key: str | None = None) -> None:
        """Forget `key`'s snapshot (every one if None), so that this process reloads it now
        rather than within `ttl`. Called by the domain functions that change what assigning
        sees, after their transaction: experiments/workflows.py (start, pause, conclude) and
        experiments/allocation/reweight.py (a new period)."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)


_EXPERIMENT = Experiment.__table__
_STAMP = sa_select(
    _EXPERIMENT.c.status,
    _EXPERIMENT.c.winner,
    _EXPERIMENT.c.current_period,
    _EXPERIMENT.c.next_reweight_at,
    _EXPERIMENT.c.updated_at,
).where(_EXPERIMENT.c.key == bindparam("key"))


def _stamp(database: Database, key: str) -> tuple | None:
    """What changes while an experiment runs, in one indexed look-up (None: no such key)."""
    with database.engine.connect() as connection:
        row = connection.execute(_STAMP, {"key": key}).first()
    return tuple(row) if row is not None else None
