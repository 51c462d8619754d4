"""learning: what a publication measured beside the lift

log_lift_mean, log_lift_sd: θ = log(p_level / p_baseline), the scale evidence pools on;
always_valid_p, comparisons, false_discovery_rate: how the publication chose its wins;
lift_median: the lift's posterior median, the figure a sentence quotes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("log_lift_mean", sa.Float()),
    ("log_lift_sd", sa.Float()),
    ("always_valid_p", sa.Float()),
    ("comparisons", sa.Integer()),
    ("false_discovery_rate", sa.Float()),
    ("lift_median", sa.Float()),
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
