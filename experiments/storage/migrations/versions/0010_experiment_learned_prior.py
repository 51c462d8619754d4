"""experiment.prior, prior_units, priors: start from the learnings registry's evidence

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prior", sa.String(length=16), nullable=False, server_default="default")
        )
        batch_op.add_column(
            sa.Column("prior_units", sa.Float(), nullable=False, server_default="100")
        )
        batch_op.add_column(
            sa.Column(
                "priors",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_column("priors")
        batch_op.drop_column("prior_units")
        batch_op.drop_column("prior")
