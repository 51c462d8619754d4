"""outcome: no index on assignment_id

Outcomes are read by experiment (results, rebuilds), joined to their assignment through the
assignment's primary key; the index on outcome.assignment_id served no query and cost a
random index insert per event.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outcome_assignment_id", table_name="outcome")


def downgrade() -> None:
    op.create_index("ix_outcome_assignment_id", "outcome", ["assignment_id"])
