"""page_session: a signed-in page session, so that signing out ends it on the server

The /ui cookie was the signed key id alone: a copy of it kept working after signing out. It
now carries a random session id whose SHA-256 is stored here; signing out sets `ended_at`.
Sessions signed in before this revision are signed out (their cookies carry no session id).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "page_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["key_id"], ["api_key.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("page_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_page_session_key_id"), ["key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("page_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_page_session_key_id"))
    op.drop_table("page_session")
