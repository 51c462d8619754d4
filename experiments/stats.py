"""Sufficient statistics per arm (experiment, period, segment, variant, metric), kept in SQL.

Counters only ever move by atomic `INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n`, so
concurrent workers on any number of hosts never lose an increment.
"""

from collections import Counter

from sqlmodel import Session

from experiments.db import dialect_insert
from experiments.models import ArmStats

ARM_KEY = ("experiment_id", "period", "segment", "variant", "metric")


def add_units(
    *,
    session: Session,
    experiment_id: int,
    metrics: tuple[str, ...],
    counts: Counter,
) -> None:
    """Count newly assigned units: counts[(period, segment, variant)] = how many."""
    if not counts:
        return
    rows = [
        {
            "experiment_id": experiment_id,
            "period": period,
            "segment": segment,
            "variant": variant,
            "metric": metric,
            "units": n,
            "conversions": 0,
            "sum": 0.0,
            "sum_squares": 0.0,
        }
        for (period, segment, variant), n in counts.items()
        for metric in metrics
    ]
    table = ArmStats.__table__
    statement = dialect_insert(session, table).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=list(ARM_KEY),
        set_={"units": table.c.units + statement.excluded.units},
    )
    session.execute(statement)
