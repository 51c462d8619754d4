"""When to send: a variant's `send` instruction, the unit's time zone and the quiet hours."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from experiments.bounds import time_zone
from experiments.errors import InvalidSpec
from experiments.spec import QuietHours


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a 422 naming it."""
    found = time_zone(name)
    if found is None:
        raise InvalidSpec(
            {"timezone": [f"Unknown time zone '{name}': use an IANA name such as 'Europe/Paris'."]}
        )
    return found


def send_at(
    send: dict | None,
    now: datetime,
    tz: ZoneInfo | None,
    quiet_hours: QuietHours | None,
) -> datetime | None:
    """The UTC time to send at, or None when it cannot be known (a local hour, no time zone).

    - `{"delay_minutes": m}`: now + m minutes.
    - `{"local_hour": h}` (optionally `"local_minute"`): the next h:00 local time at or after now.
    - no instruction: now.
    Then, with a time zone, a time inside the quiet hours moves to their end (local time).
    """
    send = send or {}
    if "delay_minutes" in send:
        moment = now + timedelta(minutes=float(send["delay_minutes"]))
    elif "local_hour" in send:
        if tz is None:
            return None
        moment = next_local_time(now, tz, int(send["local_hour"]), int(send.get("local_minute", 0)))
    else:
        moment = now
    if tz is not None and quiet_hours is not None:
        moment = leave_quiet_hours(moment, tz, quiet_hours)
    return moment.astimezone(UTC)


def next_local_time(now: datetime, tz: ZoneInfo, hour: int, minute: int = 0) -> datetime:
    """The first instant at or after `now` whose local wall clock reads hour:minute.

    On the day clocks spring forward, a wall time inside the gap does not exist; it is read
    with the offset from before the change, which lands just after the gap (02:30 → 03:30).
    On the day they fall back, the first of the two instants is taken.
    """
    local_now = now.astimezone(tz)
    for days in range(3):
        day = local_now.date() + timedelta(days=days)
        candidate = _wall_clock(day, time(hour, minute), tz)
        if candidate >= now:
            return candidate
    raise AssertionError("unreachable: a wall time recurs within two days")


def leave_quiet_hours(moment: datetime, tz: ZoneInfo, quiet: QuietHours) -> datetime:
    """`moment` if it is outside the local quiet hours [start, end), else the end of them."""
    local = moment.astimezone(tz)
    hour = local.hour
    inside = (
        (quiet.start <= hour < quiet.end)
        if quiet.start < quiet.end
        else (hour >= quiet.start or hour < quiet.end)
    )
    if not inside:
        return moment
    day = local.date()
    if quiet.start > quiet.end and hour >= quiet.start:
        day += timedelta(days=1)  # the quiet night ends tomorrow morning
    return _wall_clock(day, time(quiet.end), tz)


def _wall_clock(day, at: time, tz: ZoneInfo) -> datetime:
    """The instant, in UTC, when the wall clock in `tz` reads `at` on `day` (fold 0: the first
    of two on a fall-back night; the offset before the change inside a spring-forward gap).
    Returned in UTC because an aware local time on a fall-back hour never compares equal to
    anything in another zone."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
