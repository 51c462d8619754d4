"""learning: source, channel, hypothesis, baseline rate; one published learning per key; full-text
search (FTS5 on SQLite, a GIN tsvector index on PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT = "coalesce(summary, '') || ' ' || coalesce(hypothesis, '') || ' ' || coalesce(notes, '')"


def upgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="published")
        )
        batch_op.add_column(sa.Column("channel", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column(
                "hypothesis", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""
            )
        )
        batch_op.add_column(sa.Column("baseline_rate", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("level_units", sa.Integer(), nullable=True))
        batch_op.create_index("ix_learning_metric_segment", ["metric", "segment"])
        batch_op.create_index("ix_learning_factor_level", ["factor", "level"])
    op.create_index(
        "ux_learning_published",
        "learning",
        ["experiment_id", "segment", "metric", "factor", "level"],
        unique=True,
        sqlite_where=sa.text("source = 'published'"),
        postgresql_where=sa.text("source = 'published'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX learning_fts_gin ON learning USING GIN (to_tsvector('english', {TEXT}))"
        )
    else:
        op.execute(
            "CREATE VIRTUAL TABLE learning_fts USING fts5(summary, hypothesis, notes, "
            "content='learning', content_rowid='id', tokenize='porter unicode61')"
        )
        op.execute(
            "CREATE TRIGGER learning_fts_insert AFTER INSERT ON learning BEGIN "
            "INSERT INTO learning_fts(rowid, summary, hypothesis, notes) "
            "VALUES (new.id, new.summary, new.hypothesis, new.notes); END"
        )
        op.execute(
            "CREATE TRIGGER learning_fts_delete AFTER DELETE ON learning BEGIN "
            "INSERT INTO learning_fts(learning_fts, rowid, summary, hypothesis, notes) "
            "VALUES ('delete', old.id, old.summary, old.hypothesis, old.notes); END"
        )
        op.execute(
            "CREATE TRIGGER learning_fts_update AFTER UPDATE ON learning BEGIN "
            "INSERT INTO learning_fts(learning_fts, rowid, summary, hypothesis, notes) "
            "VALUES ('delete', old.id, old.summary, old.hypothesis, old.notes); "
            "INSERT INTO learning_fts(rowid, summary, hypothesis, notes) "
            "VALUES (new.id, new.summary, new.hypothesis, new.notes); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX learning_fts_gin")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER learning_fts_{trigger}")
        op.execute("DROP TABLE learning_fts")
    op.drop_index("ux_learning_published", table_name="learning")
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.drop_index("ix_learning_factor_level")
        batch_op.drop_index("ix_learning_metric_segment")
        batch_op.drop_column("level_units")
        batch_op.drop_column("baseline_rate")
        batch_op.drop_column("hypothesis")
        batch_op.drop_column("channel")
        batch_op.drop_column("source")
