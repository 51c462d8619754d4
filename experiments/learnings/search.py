"""Searching the registry: filters on a learning's fields, its tags and its text, sorted by
date or lift, a page at a time with the total count.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from experiments.errors import InvalidSpec
from experiments.learnings import store
from experiments.storage.tables import Learning

SORTS = ("date", "-date", "lift", "-lift")


@dataclass(frozen=True)
class Filters:
    """What a search asks for: every field given must match, every tag be among its tags, and
    `q` match its text."""

    segment: str | None = None
    metric: str | None = None
    factor: str | None = None
    level: str | None = None
    channel: str | None = None
    experiment: str | None = None
    verdict: str | None = None
    tags: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    source: str | None = None


def search(
    *, session: Session, filters: Filters, sort: str = "-date", offset: int = 0, limit: int = 50
) -> tuple[list[Learning], int]:
    """Learnings matching every filter (and the text query), sorted; with the total count."""
    if sort not in SORTS:
        raise InvalidSpec({"sort": [f"Unknown sort '{sort}': one of {', '.join(SORTS)}."]})
    conditions = _conditions(session, filters)
    total = session.execute(
        select(func.count()).select_from(Learning).where(*conditions)
    ).scalar_one()
    order = {
        "date": (Learning.created_at.asc(), Learning.id.asc()),
        "-date": (Learning.created_at.desc(), Learning.id.desc()),
        "lift": (Learning.lift_mean.is_(None), Learning.lift_mean.asc(), Learning.id.asc()),
        "-lift": (Learning.lift_mean.is_(None), Learning.lift_mean.desc(), Learning.id.desc()),
    }[sort]
    items = session.execute(
        select(Learning).where(*conditions).order_by(*order).offset(offset).limit(limit)
    ).scalars()
    return list(items), total


def _conditions(session: Session, f: Filters) -> list:
    """The SQL conditions of the filters, all of which a learning must meet."""
    conditions = []
    for column, value in (
        (Learning.segment, f.segment),
        (Learning.metric, f.metric),
        (Learning.factor, f.factor),
        (Learning.level, f.level),
        (Learning.channel, f.channel),
        (Learning.experiment_key, f.experiment),
        (Learning.verdict, f.verdict),
        (Learning.source, f.source),
    ):
        if value is not None:
            conditions.append(column == value)
    for index, tag in enumerate(f.tags):
        conditions.append(store.has_tag(session=session, tag=tag, name=f"tag_{index}"))
    if f.since is not None:
        conditions.append(Learning.created_at >= f.since)
    if f.until is not None:
        conditions.append(Learning.created_at <= f.until)
    if f.q:
        conditions.append(store.text_match(session=session, query=f.q))
    return conditions
