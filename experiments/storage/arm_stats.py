"""The arm-statistics upsert: the one statement by which the write paths add to `arm_stats`.

An arm's row (experiment, period, segment, variant, metric) is inserted by the first write that
reaches it and added to by every later one, inside the database, so that concurrent writers'
increments add up exactly. Assignments add units and assigned seconds
(experiments/assignment/store.py); outcomes add conversions, sums and sums of squares
(experiments/outcomes/store.py), as experiments/statistics/counting.py counts them.
"""

from typing import NamedTuple

ARM_STATS_COLUMNS = (
    "experiment_id",
    "period",
    "segment",
    "variant",
    "metric",
    "units",
    "conversions",
    "sum",
    "sum_squares",
    "assigned_seconds",
)

# PostgreSQL's types of those columns, for statements that pass them as arrays (unnest).
ARM_STATS_TYPES = (
    "integer",
    "integer",
    "varchar",
    "varchar",
    "varchar",
    "integer",
    "integer",
    "double precision",
    "double precision",
    "double precision",
)


class ArmStatsUpsert(NamedTuple):
    """The statement around its VALUES: rows carry every column of ARM_STATS_COLUMNS, zeros
    in those they do not add to."""

    head: str  # INSERT INTO arm_stats (…every column)
    tail: str  # ON CONFLICT … DO UPDATE SET: each added column += the new row's


def arm_stats_upsert(*added: str) -> ArmStatsUpsert:
    """The upsert that adds the rows' `added` columns to their arms' statistics."""
    return ArmStatsUpsert(
        f"INSERT INTO arm_stats ({', '.join(ARM_STATS_COLUMNS)})",
        "ON CONFLICT (experiment_id, period, segment, variant, metric) DO UPDATE SET "
        + ", ".join(f"{column} = arm_stats.{column} + excluded.{column}" for column in added),
    )
