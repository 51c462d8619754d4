"""learning.lift_median: the lift's posterior median, the figure a sentence quotes

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("lift_median", sa.Float()),)


def upgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    # In place, never by copying the table: SQLite's copy would drop the full-text triggers.
    with op.batch_alter_table("learning", schema=None, recreate="never") as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
