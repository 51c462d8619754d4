"""send_at: local hours across DST changes, delays, quiet hours, unknown zones."""

from datetime import UTC, datetime

import pytest

from experiments.assignment.timing import next_local_time, send_at, zone
from experiments.errors import InvalidSpec
from experiments.spec import QuietHours

NEW_YORK = zone("America/New_York")
PARIS = zone("Europe/Paris")
NIGHT = QuietHours(start=21, end=8)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_local_hour_later_today():
    # 07:00 in New York (EST, UTC-5) → 09:00 the same day = 14:00 UTC.
    assert send_at({"local_hour": 9}, utc(2026, 1, 15, 12), NEW_YORK, None) == utc(2026, 1, 15, 14)


def test_local_hour_already_past_moves_to_tomorrow():
    assert send_at({"local_hour": 9}, utc(2026, 1, 15, 15), NEW_YORK, None) == utc(2026, 1, 16, 14)


def test_exactly_at_the_local_hour_is_now():
    assert send_at({"local_hour": 9}, utc(2026, 1, 15, 14), NEW_YORK, None) == utc(2026, 1, 15, 14)


def test_local_hour_in_summer_uses_daylight_time():
    assert send_at({"local_hour": 9}, utc(2026, 7, 1, 5), NEW_YORK, None) == utc(2026, 7, 1, 13)


def test_local_hour_across_the_spring_forward_night():
    # 2026-03-08: New York jumps from 02:00 EST to 03:00 EDT. 9:00 that morning is 13:00 UTC,
    # asked for at 23:00 EST the evening before.
    assert send_at({"local_hour": 9}, utc(2026, 3, 8, 4), NEW_YORK, None) == utc(2026, 3, 8, 13)


def test_a_local_hour_inside_the_spring_gap_lands_just_after_it():
    # 02:30 does not exist on 2026-03-08 in New York: it is read as 03:30 EDT = 07:30 UTC.
    assert next_local_time(utc(2026, 3, 8, 5), NEW_YORK, 2, 30) == utc(2026, 3, 8, 7, 30)


def test_a_repeated_local_hour_on_the_fall_back_night_takes_the_first():
    # 2026-11-01: 01:00-02:00 happens twice in New York; the first is EDT, 05:00 UTC.
    assert next_local_time(utc(2026, 11, 1, 3), NEW_YORK, 1) == utc(2026, 11, 1, 5)


def test_local_hour_across_the_fall_back_night():
    # 9:00 on 2026-11-01 is EST again: 14:00 UTC (13:00 the day before, under EDT).
    assert send_at({"local_hour": 9}, utc(2026, 11, 1, 3), NEW_YORK, None) == utc(2026, 11, 1, 14)


def test_delay_minutes():
    assert send_at({"delay_minutes": 240}, utc(2026, 1, 15, 10), None, None) == utc(2026, 1, 15, 14)


def test_delay_into_quiet_hours_moves_to_their_end():
    # 18:00 UTC + 4 h = 22:00 UTC = 23:00 in Paris, quiet; it moves to 08:00 Paris = 07:00 UTC.
    moment = send_at({"delay_minutes": 240}, utc(2026, 1, 15, 18), PARIS, NIGHT)
    assert moment == utc(2026, 1, 16, 7)


def test_just_after_midnight_is_quiet_until_the_same_mornings_end():
    # 01:00 Paris (00:00 UTC) is quiet: 08:00 Paris the same day.
    assert send_at(None, utc(2026, 1, 15, 0), PARIS, NIGHT) == utc(2026, 1, 15, 7)


def test_end_of_quiet_hours_is_not_quiet():
    assert send_at(None, utc(2026, 1, 15, 7), PARIS, NIGHT) == utc(2026, 1, 15, 7)


def test_daytime_quiet_hours_do_not_wrap():
    lunch = QuietHours(start=12, end=14)
    assert send_at(None, utc(2026, 1, 15, 11, 30), PARIS, lunch) == utc(2026, 1, 15, 13)
    assert send_at(None, utc(2026, 1, 15, 14), PARIS, lunch) == utc(2026, 1, 15, 14)


def test_quiet_hours_ending_on_the_spring_forward_morning():
    # Quiet until 08:00 local on 2026-03-29 in Paris (the day CEST starts): 06:00 UTC.
    assert send_at(None, utc(2026, 3, 28, 23), PARIS, NIGHT) == utc(2026, 3, 29, 6)


def test_without_time_zone_a_local_hour_cannot_be_placed():
    assert send_at({"local_hour": 9}, utc(2026, 1, 15, 12), None, NIGHT) is None
    assert send_at(None, utc(2026, 1, 15, 23), None, NIGHT) == utc(2026, 1, 15, 23)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "UTC\n", "Europe/\x00Paris"]
)
def test_unknown_time_zone_breaks_a_rule(name):
    with pytest.raises(InvalidSpec) as raised:
        zone(name)
    assert "timezone" in raised.value.errors
