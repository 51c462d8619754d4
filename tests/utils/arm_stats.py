"""Stored statistics without the traffic: an allocation period opened by hand and arm_stats
rows written directly, for tests of what reads them (results, the read model, reweights)."""

from datetime import datetime

from sqlmodel import Session

from experiments.storage.tables import AllocationPeriod, ArmStats, Experiment


def open_period(
    session: Session, experiment: Experiment, number: int, weights: dict, started_at: datetime
) -> None:
    """Period `number` with these weights ({segment: {variant: weight}})."""
    session.add(
        AllocationPeriod(
            experiment_id=experiment.id,
            number=number,
            seed=number,
            weights=weights,
            started_at=started_at,
        )
    )


def store_arm_stats(
    session: Session, experiment: Experiment, rows: dict, metrics: tuple[str, ...]
) -> None:
    """`rows`, {(period, segment, arm): (units, conversions)}, for each metric; the
    conversions on the first metric only (the others: units, no conversions)."""
    for (period, segment, arm), (units, conversions) in rows.items():
        for metric in metrics:
            session.add(
                ArmStats(
                    experiment_id=experiment.id,
                    period=period,
                    segment=segment,
                    variant=arm,
                    metric=metric,
                    units=units,
                    conversions=conversions if metric == metrics[0] else 0,
                )
            )
