"""Storage of assignments, in plain DB-API calls inside the group-commit writer's transaction
(experiments/storage/writer.py), in SQLite's and PostgreSQL's dialects.

One transaction per request (grouped with other requests' by the writer): insert the new
assignments (the unique (experiment, sticky unit) decides which units are new), read back the
stored answers of the units that were not, and add the new units to their arms' statistics.
"""

import json
from collections import Counter
from typing import NamedTuple

from experiments.storage.arm_stats import ARM_STATS_COLUMNS, arm_stats_upsert
from experiments.storage.writer import WriteTransaction, memoized_sqlite_time, values_statements

COLUMNS = (
    "id",
    "experiment_id",
    "unit_id",
    "sticky_unit",
    "variant",
    "segment",
    "period",
    "propensity",
    "holdout",
    "assigned_at",
    "send_at",
)
STORED = "id, unit_id, variant, segment, period, propensity, holdout"
ADD_UNITS = arm_stats_upsert("units", "assigned_seconds")


class PreparedAssignments(NamedTuple):
    """Assignment rows made ready for the driver before the write lock is taken."""

    ids: list[str]
    params: object  # PostgreSQL: one array per column; SQLite: (sql, parameters) statements


def prepare_assignments(rows: list[dict], *, postgres: bool) -> PreparedAssignments:
    """Rows as the driver takes them; done before the writer runs, outside the write lock.

    PostgreSQL gets them in unit order: two transactions storing the same new units in
    opposite orders would each wait for the other's row (a deadlock)."""
    if postgres:
        rows = sorted(rows, key=lambda row: (row["sticky_unit"] or "", row["id"]))
        ids = [row["id"] for row in rows]
        return PreparedAssignments(ids, {name: [row[name] for row in rows] for name in COLUMNS})
    ids = [row["id"] for row in rows]
    return PreparedAssignments(
        ids,
        values_statements(
            f"INSERT INTO assignment ({', '.join(COLUMNS)})",
            "ON CONFLICT (experiment_id, sticky_unit) DO NOTHING",
            _sqlite_rows(rows),
        ),
    )


def _sqlite_rows(rows: list[dict]) -> list[tuple]:
    """Rows as SQLite parameters. A batch shares one `assigned_at` and a few `send_at`s, so
    each distinct time is formatted once (strftime per row was a tenth of a batch's time)."""
    text = memoized_sqlite_time()
    return [
        (
            r["id"],
            r["experiment_id"],
            r["unit_id"],
            r["sticky_unit"],
            r["variant"],
            r["segment"],
            r["period"],
            r["propensity"],
            int(r["holdout"]),
            text(r["assigned_at"]),
            text(r["send_at"]),
        )
        for r in rows
    ]


def insert_assignments(transaction: WriteTransaction, rows: PreparedAssignments) -> set[str]:
    """Insert assignments; a sticky unit already stored is skipped. The ids inserted."""
    if not rows.ids:
        return set()
    cursor = transaction.cursor
    if transaction.postgres:
        cursor.execute(
            """
            INSERT INTO assignment (id, experiment_id, unit_id, sticky_unit, variant,
                                    segment, period, propensity, holdout, assigned_at,
                                    send_at)
            SELECT * FROM unnest(
                %(id)s::varchar[], %(experiment_id)s::integer[], %(unit_id)s::varchar[],
                %(sticky_unit)s::varchar[], %(variant)s::varchar[], %(segment)s::varchar[],
                %(period)s::integer[], %(propensity)s::double precision[],
                %(holdout)s::boolean[], %(assigned_at)s::timestamptz[],
                %(send_at)s::timestamptz[])
            ON CONFLICT (experiment_id, sticky_unit) DO NOTHING
            RETURNING id
            """,
            rows.params,
        )
        return {row[0] for row in cursor.fetchall()}
    connection = cursor.connection
    before = connection.total_changes
    for sql, params in rows.params:
        cursor.execute(sql, params)
    if connection.total_changes - before == len(rows.ids):
        return set(rows.ids)
    # Some units were stored before: the ids that made it in are ours (ids are unique).
    cursor.execute(
        "SELECT id FROM assignment WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(rows.ids),),
    )
    return {row[0] for row in cursor.fetchall()}


def stored_assignments(
    transaction: WriteTransaction, experiment_id: int, unit_ids: list[str]
) -> dict[str, dict]:
    """The stored (sticky) assignments of these units, by unit id."""
    if not unit_ids:
        return {}
    cursor = transaction.cursor
    if transaction.postgres:
        cursor.execute(
            f"SELECT {STORED} FROM assignment WHERE experiment_id = %s AND sticky_unit = ANY(%s)",
            (experiment_id, unit_ids),
        )
    else:
        # One JSON parameter for any number of units (no bound-variable limit).
        cursor.execute(
            f"SELECT {STORED} FROM assignment WHERE experiment_id = ? "
            "AND sticky_unit IN (SELECT value FROM json_each(?))",
            (experiment_id, json.dumps(unit_ids)),
        )
    return {
        row[1]: {
            "id": row[0],
            "unit_id": row[1],
            "variant": row[2],
            "segment": row[3],
            "period": row[4],
            "propensity": row[5],
            "holdout": bool(row[6]),
        }
        for row in cursor.fetchall()
    }


def add_units(
    transaction: WriteTransaction,
    experiment_id: int,
    metrics: tuple[str, ...],
    counts: Counter,
    at: float,
) -> None:
    """units += n for every metric of each arm: counts[(period, segment, variant)] = n,
    all assigned at `at` (Unix seconds)."""
    rows = [
        (experiment_id, period, segment, variant, metric, n, 0, 0, 0, n * at)
        for (period, segment, variant), n in sorted(counts.items())
        for metric in metrics
    ]
    if not rows:
        return
    head, tail = ADD_UNITS
    if transaction.postgres:
        marks = ", ".join(["%s"] * len(ARM_STATS_COLUMNS))
        transaction.cursor.executemany(f"{head} VALUES ({marks}) {tail}", rows)
    else:
        for sql, params in values_statements(head, tail, rows):
            transaction.cursor.execute(sql, params)
