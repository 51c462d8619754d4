"""arm_stats.assigned_seconds: the sum of the units' assignment times

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("arm_stats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assigned_seconds", sa.Float(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("arm_stats", schema=None) as batch_op:
        batch_op.drop_column("assigned_seconds")
