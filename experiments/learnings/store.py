"""The registry's SQL that differs by database: a tag among a learning's tags (a JSON array)
and the full-text match over summary, hypothesis and notes (FTS5 on SQLite, a tsvector on
PostgreSQL), each an SQL condition for search.py to combine.
"""

import json

from sqlalchemy import func, select, text
from sqlmodel import Session

from experiments.storage.tables import Learning


def has_tag(*, session: Session, tag: str, name: str):
    """An element of the tags array equal to the tag, whatever it holds (quotes, backslashes,
    any script): the text of the JSON would spell those differently on each database. `name`
    is the bound parameter's, one per tag of a search."""
    if session.get_bind().dialect.name == "postgresql":
        condition = text(f"learning.tags @> CAST(:{name} AS jsonb)")
        return condition.bindparams(**{name: json.dumps([tag])})
    condition = text(f"EXISTS (SELECT 1 FROM json_each(learning.tags) WHERE value = :{name})")
    return condition.bindparams(**{name: tag})


def text_match(*, session: Session, query: str):
    """Full-text match over summary, hypothesis and notes: FTS5 on SQLite (every word, stemmed,
    as a prefix), websearch syntax on PostgreSQL (the GIN index of migration 0009)."""
    if session.get_bind().dialect.name == "postgresql":
        document = func.to_tsvector(
            text("'english'"),
            func.coalesce(Learning.summary, "")
            + " "
            + func.coalesce(Learning.hypothesis, "")
            + " "
            + func.coalesce(Learning.notes, ""),
        )
        return document.op("@@")(func.websearch_to_tsquery(text("'english'"), query))
    words = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
    if not words:
        return Learning.id.is_(None)
    match = " ".join(f'"{w}"*' for w in words)
    matches = text("SELECT rowid FROM learning_fts WHERE learning_fts MATCH :m").bindparams(m=match)
    return Learning.id.in_(select(text("rowid")).select_from(matches.columns().subquery()))
