"""assignment: index units by id only for decision stickiness

Under `unit` stickiness a unit's assignment is found through the unique index on
(experiment_id, sticky_unit), which holds the same values. Indexing unit_id as well doubled the
index pages every insert writes; now only decision assignments (sticky_unit NULL) are indexed
by unit_id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECISIONS_ONLY = sa.text("sticky_unit IS NULL")


def upgrade() -> None:
    op.drop_index("ix_assignment_experiment_unit", table_name="assignment")
    op.create_index(
        "ix_assignment_decision_unit",
        "assignment",
        ["experiment_id", "unit_id"],
        sqlite_where=DECISIONS_ONLY,
        postgresql_where=DECISIONS_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_assignment_decision_unit", table_name="assignment")
    op.create_index("ix_assignment_experiment_unit", "assignment", ["experiment_id", "unit_id"])
