"""learning: note_codes, one stable code per line of a published learning's notes

Existing published learnings get theirs from their notes' wording, which every publication
so far has written in the same four sentences; hand-written ones have none.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
# The wording that names each note a publication has written, as it stood at this revision.
MARKERS = (
    ("own_data", "From this experiment's own data:"),
    ("job_not_converged", "did not converge (max R-hat"),
    ("job_pooled_over_uneven_allocation", "sums each segment's counts over allocation periods"),
    ("not_a_discovery", "but not a discovery among the publication's"),
)


def _code(line: str) -> str | None:
    return next((code for code, marker in MARKERS if marker in line), None)


def upgrade() -> None:
    with op.batch_alter_table("learning", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note_codes", JSON, nullable=False, server_default="[]"))
    learning = sa.table("learning", sa.column("id", sa.Integer), sa.column("note_codes", JSON))
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, notes FROM learning WHERE source = 'published' AND notes <> ''")
    ).all()
    for row_id, notes in rows:
        codes = [code for code in map(_code, notes.split("\n")) if code is not None]
        connection.execute(
            learning.update().where(learning.c.id == row_id).values(note_codes=codes)
        )


def downgrade() -> None:
    # In place, never by copying the table: SQLite's copy would drop the full-text triggers.
    with op.batch_alter_table("learning", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("note_codes")
