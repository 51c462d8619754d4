"""learning.always_valid_p, comparisons, false_discovery_rate: how a publication chose its wins

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("always_valid_p", sa.Float()),
    ("comparisons", sa.Integer()),
    ("false_discovery_rate", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    # In place, never by copying the table: SQLite's copy would drop the full-text triggers.
    with op.batch_alter_table("learning", schema=None, recreate="never") as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
