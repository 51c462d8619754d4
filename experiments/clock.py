"""Time as Kairos keeps it: timezone-aware UTC datetimes."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (naive ones are UTC by convention)."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
