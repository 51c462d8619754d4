"""experiment.relative_threshold_of_caring: the threshold of caring as a share of the control's
mean; threshold_of_caring (in the metric's units) becomes optional

The old default, 0.001 in rate units, was 20% of a 0.5% rate and told every A/A test to
conclude within days (issue 13). An experiment stored with exactly that value took the default
(nothing distinguishes one that asked for it), so it moves to the relative default; any other
value was chosen and is kept. The downgrade gives experiments without an absolute threshold
the old default back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_DEFAULT = 0.001


def upgrade() -> None:
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "relative_threshold_of_caring", sa.Float(), nullable=False, server_default="0.01"
            )
        )
        batch_op.alter_column(
            "threshold_of_caring", existing_type=sa.Float(), nullable=True, server_default=None
        )
    experiment = sa.table("experiment", sa.column("threshold_of_caring", sa.Float()))
    op.execute(
        experiment.update()
        .where(experiment.c.threshold_of_caring == OLD_DEFAULT)
        .values(threshold_of_caring=None)
    )


def downgrade() -> None:
    experiment = sa.table("experiment", sa.column("threshold_of_caring", sa.Float()))
    op.execute(
        experiment.update()
        .where(experiment.c.threshold_of_caring.is_(None))
        .values(threshold_of_caring=OLD_DEFAULT)
    )
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.alter_column(
            "threshold_of_caring",
            existing_type=sa.Float(),
            nullable=False,
            server_default=str(OLD_DEFAULT),
        )
        batch_op.drop_column("relative_threshold_of_caring")
