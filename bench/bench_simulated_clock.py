"""A simulated clock on several nodes: after a reweight (on any node), every assignment at a
later `now` must use the new period.

Each drive runs on two app instances sharing one SQLite file, each with its own engine and
experiment cache (as two workers or hosts have), requests alternating between them, on an
admin's `now`. Beside it, the same drive on one instance that re-reads the experiment at every
request (KAIROS_CACHE_SECONDS=0): the reference.

- on demand: 20 simulated days × 2,000 units a day (4 batches, 6 hours apart) and a reweight
  each morning (POST …/reweight with `now`) on the node that did not serve the batch after it.
  Figure: the share of the assignments made after a reweight that carry an older period.
- on schedule, as `kairos simulate` drives it: 48 simulated hours × 400 units, one batch an
  hour, a reweight due every hour, claimed by the first request after it.
  Figure: the same share, and how many of the due reweights opened a period.

Units convert at 4–6% by arm (delays exponential, mean 6 h) and are reported when they happen,
so the bandit learns and its periods' weights differ. (Regret is not shown: each period's hash
seed is random, and over 5 runs the reference's own mean regret moved from 73 to 103 between
two runs of this script.)

Target: no assignment after a reweight carries an older period, and two nodes open as many
periods as the reference.
"""

import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

RATES = {
    "timing=morning,channel=email": 0.040,
    "timing=morning,channel=push": 0.045,
    "timing=evening,channel=email": 0.050,
    "timing=evening,channel=push": 0.060,
}
KEY = "clock-drive"
MEAN_DELAY_HOURS, WINDOW_HOURS = 6.0, 72.0
NEVER_DUE = 7 * 24 * 3600  # the longest schedule: on-demand drives reweight daily before it
CACHE_SECONDS = (1.0, 60.0)  # the default, and a minute
RUNS = 2


def experiment_body(update_every_seconds: int) -> dict:
    return {
        "key": KEY,
        "name": "Simulated clock on two nodes",
        "allocation": "thompson",
        "factors": {"timing": ["morning", "evening"], "channel": ["email", "push"]},
        "control": "timing=morning,channel=email",
        "metrics": [{"key": "activated", "type": "binary", "role": "primary"}],
        "attribution_window_hours": WINDOW_HOURS,
        "holdout": 0.05,
        "bandit": {
            "update_every_seconds": update_every_seconds,
            "min_weight": 0.01,
            "min_units_per_arm": 20,
        },
    }


@dataclass
class Drive:
    assigned_after_reweight: int = 0  # assignments made once a reweight had opened period ≥ 2
    older_period: int = 0  # of those, the ones that carried an older period than the latest
    reweights_due: int = 0
    periods: int = 1  # periods opened, the first included

    @property
    def older_share(self) -> float:
        return (
            self.older_period / self.assigned_after_reweight
            if self.assigned_after_reweight
            else 0.0
        )


def drive(
    clients: list,
    headers: dict,
    *,
    steps: int,
    units_per_step: int,
    step_hours: float,
    reweight_every: int | None,
    seed: int = 1,
) -> Drive:
    """Assign a batch every `step_hours` of simulated time on the next client in turn.

    `reweight_every`: the steps between on-demand reweights, each made on the client that does
    not serve the next batch; None: scheduled reweights, due at every step. Before each batch
    the latest period is read from the database; an answer with an older one is counted.
    """
    rng = random.Random(seed)
    first = clients[0]
    schedule = reweight_every is None
    update_every = int(step_hours * 3600) if schedule else NEVER_DUE
    _call(first, headers, "POST", "/v1/experiments", experiment_body(update_every))
    _call(first, headers, "POST", f"/v1/experiments/{KEY}/start")
    clock = datetime.now(UTC) + timedelta(minutes=1)  # the experiment starts on the real clock
    result = Drive()
    pending: list[tuple[datetime, dict]] = []
    for step in range(steps):
        now = clock + timedelta(hours=step * step_hours)
        client = clients[step % len(clients)]
        pending = _report_due(client, headers, pending, now)
        if step and (schedule or step % reweight_every == 0):
            result.reweights_due += 1
        if not schedule and step and step % reweight_every == 0:
            other = clients[(step + 1) % len(clients)]
            _call(other, headers, "POST", f"/v1/experiments/{KEY}/reweight", {"now": _iso(now)})
        latest = _call(client, headers, "GET", f"/v1/experiments/{KEY}")["period"]
        units = [{"unit_id": f"unit-{seed}-{step}-{i}"} for i in range(units_per_step)]
        body = {"experiment": KEY, "units": units, "now": _iso(now)}
        answers = _call(client, headers, "POST", "/v1/assignments/batch", body)["assignments"]
        if latest > 1:
            result.assigned_after_reweight += len(answers)
            result.older_period += sum(a["period"] < latest for a in answers)
        for answer in answers:
            if answer["holdout"]:
                continue
            if rng.random() < RATES[answer["variant"]]:
                at = now + timedelta(hours=_delay_hours(rng))
                event = {
                    "event_id": f"activated-{answer['assignment_id']}",
                    "assignment_id": answer["assignment_id"],
                    "metric": "activated",
                    "occurred_at": _iso(at),
                }
                pending.append((at, event))
    result.periods = _call(clients[0], headers, "GET", f"/v1/experiments/{KEY}")["period"]
    return result


def _delay_hours(rng: random.Random) -> float:
    while True:
        delay = rng.expovariate(1 / MEAN_DELAY_HOURS)
        if delay <= WINDOW_HOURS:
            return delay


def _report_due(client, headers, pending: list, now: datetime) -> list:
    """Report the conversions that have happened by `now`; return those still to come."""
    due = [event for at, event in pending if at <= now]
    for begin in range(0, len(due), 10_000):
        _call(
            client, headers, "POST", "/v1/outcomes/batch", {"events": due[begin : begin + 10_000]}
        )
    return [(at, event) for at, event in pending if at > now]


def _call(client, headers, method: str, path: str, body=None) -> dict:
    response = client.open(path, method=method, json=body, headers=headers)
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"{method} {path} → {response.status_code}: {response.json}")
    return response.json


def _iso(moment: datetime) -> str:
    return moment.isoformat()


DRIVES = {
    "on demand": dict(steps=80, units_per_step=500, step_hours=6.0, reweight_every=4),
    "on schedule": dict(steps=48, units_per_step=400, step_hours=1.0, reweight_every=None),
}


def run(name: str, nodes: int, cache_seconds: float, seed: int) -> Drive:
    """One drive on a fresh SQLite file."""
    from api import create_app
    from api.db import EXTENSION
    from experiments.keys import create_key
    from experiments.storage import migrate
    from experiments.storage.database import Database

    workdir = Path(tempfile.mkdtemp(prefix="kairos-clock-"))
    url = f"sqlite:///{workdir}/kairos.sqlite3"
    database = Database(url)
    apps = []
    try:
        migrate.upgrade(database)
        with database.session(write=True) as session:
            _, token = create_key(session=session, name="admin", scopes=["admin"])
        config = {"KAIROS_DATABASE_URL": url, "SECRET_KEY": "bench"}
        apps = [create_app({**config, "KAIROS_CACHE_SECONDS": cache_seconds}) for _ in range(nodes)]
        return drive(
            [app.test_client() for app in apps],
            {"Authorization": f"Bearer {token}"},
            seed=seed,
            **DRIVES[name],
        )
    finally:
        for app in apps:
            app.extensions[EXTENSION].dispose()
        database.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> bool:
    ok = True
    setups = [("1 node, cache 0 s (reference)", 1, 0.0)] + [
        (f"2 nodes, cache {cache:g} s", 2, cache) for cache in CACHE_SECONDS
    ]
    for name, shape in DRIVES.items():
        print(
            f"{name}: {shape['steps']} batches of {shape['units_per_step']:,} units, "
            f"{shape['step_hours']:g} simulated hours apart, admin `now`; {RUNS} runs each"
        )
        reference_periods = None
        for label, nodes, cache in setups:
            started = time.perf_counter()
            runs = [run(name, nodes, cache, seed) for seed in range(1, RUNS + 1)]
            seconds = (time.perf_counter() - started) / RUNS
            older = sum(r.older_period for r in runs)
            after = sum(r.assigned_after_reweight for r in runs)
            periods = [r.periods for r in runs]
            if reference_periods is None:
                reference_periods = periods
            else:
                ok &= older == 0 and periods == reference_periods
            print(
                f"  {label:<30} older period {older:>6,} of {after:>7,} ({older / after:6.2%}); "
                f"periods {min(periods)}–{max(periods)} for {runs[0].reweights_due} due; "
                f"{seconds:.0f} s a run"
            )
    print("target: older period 0 in every drive; as many periods as the reference")
    return ok
