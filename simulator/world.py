"""The synthetic world: who the users are and how they truly respond.

Three segments, each with a base 72-hour activation rate and an effect per factor level
(timing, tone, channel); a mix of arrivals between them; the share of push sends a frequency
cap suppresses; and how long a user takes to convert. Kairos never sees any of it: it sees
only the users' attributes (from which its segment rules pick their segment), then the
conversions and suppressions the run reports. `experiment_body` is the experiment that tests
this world, as the API's `POST /v1/experiments` takes it.
"""

import math
import random
from datetime import timedelta
from itertools import product

FACTORS = {
    "timing": ["morning", "evening"],
    "tone": ["friendly", "urgent"],
    "channel": ["email", "push"],
}
# True 72-hour activation rates: a base per segment, times an effect per factor level.
BASE = {"newcomers": 0.05, "power-users": 0.08, "other": 0.03}
EFFECTS = {
    "newcomers": {"push": 1.5, "morning": 1.1, "urgent": 0.85},
    "power-users": {"email": 1.3, "evening": 1.2, "friendly": 1.1},
    "other": {"friendly": 1.2, "push": 1.1},
}
SEGMENT_MIX = {"newcomers": 0.4, "power-users": 0.25, "other": 0.35}
PUSH_CAPPED = 0.03  # share of push sends a frequency cap suppresses
MEAN_DELAY_HOURS = 6.0


def variant_key(levels: dict) -> str:
    """The variant's key as Kairos names it: `timing=morning,tone=friendly,channel=email`."""
    return ",".join(f"{name}={levels[name]}" for name in FACTORS)


VARIANTS = [dict(zip(FACTORS, combo, strict=True)) for combo in product(*FACTORS.values())]


def true_rate(segment: str, levels: dict) -> float:
    """The segment's true 72-hour activation rate under these factor levels."""
    rate = BASE[segment]
    for level in levels.values():
        rate *= EFFECTS[segment].get(level, 1.0)
    return rate


def experiment_body(key: str) -> dict:
    """The experiment over this world's factors, its segments' rules matching `new_user`'s
    attributes."""
    control = {"timing": "morning", "tone": "friendly", "channel": "email"}
    return {
        "key": key,
        "name": "Simulated onboarding nudge",
        "hypothesis": "Timing, tone and channel matter differently for each segment.",
        "allocation": "thompson",
        "factors": FACTORS,
        "control": variant_key(control),
        "segments": [
            {
                "key": "newcomers",
                "rule": {"attribute": "days_since_signup", "op": "lt", "value": 14},
            },
            {
                "key": "power-users",
                "rule": {"attribute": "sessions_per_week", "op": "gte", "value": 5},
            },
        ],
        "metrics": [{"key": "activated", "type": "binary", "role": "primary"}],
        "attribution_window_hours": 72,
        "holdout": 0.05,
        "bandit": {"update_every_seconds": 3600, "min_weight": 0.02, "min_units_per_arm": 30},
    }


def new_user(rng: random.Random, unit_id: str) -> dict:
    """A user of a segment drawn from SEGMENT_MIX, with the attributes that put it there."""
    roll = rng.random()
    if roll < SEGMENT_MIX["newcomers"]:
        attributes = {"days_since_signup": rng.randrange(0, 14), "sessions_per_week": 1}
    elif roll < SEGMENT_MIX["newcomers"] + SEGMENT_MIX["power-users"]:
        attributes = {"days_since_signup": rng.randrange(30, 400), "sessions_per_week": 7}
    else:
        attributes = {"days_since_signup": rng.randrange(30, 400), "sessions_per_week": 2}
    return {"unit_id": unit_id, "attributes": attributes}


def conversion_delay(rng: random.Random) -> timedelta:
    """Exponential with mean MEAN_DELAY_HOURS, within the 72-hour window."""
    cap = -math.expm1(-72 / MEAN_DELAY_HOURS)
    return timedelta(hours=-MEAN_DELAY_HOURS * math.log1p(-rng.random() * cap))
