"""The experiment page (/ui) for 10 segments × 8 variants, on a served instance.

Target: < 500 ms per GET /ui/experiments/{key} (the median of 30 calls; p95 shown), signed in
through the sign-in form as a browser is, for a fixed split: a timing × tone × channel
experiment filled through the API on a simulated clock, 16,000 units over 8 hours in 10
segments, ~1,700 outcomes. The page draws the lift forest plot (10 segments × 8 variants and
the holdout), the posterior densities and the units over time, with every results table.
The baseline is the JSON the page is built on, GET /v1/experiments/{key}/results, timed in
the same run: the page's own cost is the difference.

The same design as a bandit reweighted every hour (4 allocation periods, 4,000 units) is held
to the same target: its results compare arms within periods (analysis/stratified.py, each
arm's exact stratified posterior on a lattice; 12.5 s for this page when they were drawn by
Monte Carlo), and the page adds the bandit's weights per segment over periods (10 more plots).
"""

import random
import re
import time
from datetime import UTC, datetime, timedelta

import requests

from bench.common import (
    GUARDED,
    SERVER,
    call,
    cohorts,
    experiment,
    kairos_server,
    median,
    outcome,
    row,
)

SEGMENTS, HOURS, UNITS_PER_HOUR, CALLS, TARGET_MS = 9, 8, 2000, 30, 500.0  # 9 + `other`
BANDIT_HOURS, BANDIT_UNITS_PER_HOUR, BANDIT_CALLS = 4, 1000, 15
START = datetime(2026, 11, 29, 6, tzinfo=UTC)

EXPERIMENT = experiment(
    "bench-pages",
    "the experiment page",
    allocation="fixed",
    factors={
        "timing": ["morning", "evening"],
        "tone": ["friendly", "urgent"],
        "channel": ["email", "push"],
    },
    control="timing=morning,tone=friendly,channel=email",
    segments=cohorts(SEGMENTS),
    metrics=GUARDED,
    holdout=0.05,
)
BANDIT = {
    **EXPERIMENT,
    "key": "bench-pages-bandit",
    "allocation": "thompson",
    "bandit": {"update_every_seconds": 3600, "min_weight": 0.01, "min_units_per_arm": 5},
}


def fill(base: str, token: str, key: str, hours: int, per_hour: int, reweight: bool) -> int:
    rng = random.Random(7)
    events = 0
    for hour in range(hours):
        now = (START + timedelta(hours=hour)).isoformat()
        units = [
            {"unit_id": f"u{hour}-{i}", "attributes": {"cohort": i % (SEGMENTS + 1)}}
            for i in range(per_hour)
        ]
        answers = assign_all_at(base, token, key, units, now)
        batch = [
            outcome(a, "activated")
            for a in answers
            if a["variant"] and rng.random() < (0.15 if "push" in a["variant"] else 0.07)
        ]
        batch += [outcome(a, "unsubscribed") for a in answers if rng.random() < 0.01]
        for event in batch:
            event["occurred_at"] = now
        call("POST", f"{base}/v1/outcomes/batch", token, {"events": batch})
        events += len(batch)
        if reweight:
            later = (START + timedelta(hours=hour + 1)).isoformat()
            call("POST", f"{base}/v1/experiments/{key}/reweight", token, {"now": later})
    return events


def assign_all_at(base: str, token: str, key: str, units: list[dict], now: str) -> list[dict]:
    answer = call(
        "POST",
        f"{base}/v1/assignments/batch",
        token,
        {"experiment": key, "units": units, "now": now},
    )
    return answer["assignments"]


def signed_in(base: str, token: str) -> requests.Session:
    browser = requests.Session()
    form = browser.get(f"{base}/ui/login", timeout=30).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = browser.post(f"{base}/ui/login", data={"token": token, "csrf_token": csrf}, timeout=30)
    assert answer.ok and "Experiments" in answer.text, answer.status_code
    return browser


def timed(session: requests.Session, url: str, headers=None) -> tuple[float, bytes]:
    started = time.perf_counter()
    answer = session.get(url, headers=headers, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status_code == 200, answer.text[:300]
    return elapsed, answer.content


def measure(base: str, token: str, browser: requests.Session, key: str, calls: int):
    """(page timings, results timings, page HTML), sorted, after one warm call of each."""
    page_url = f"{base}/ui/experiments/{key}"
    _, html = timed(browser, page_url)  # warm: templates, imports
    pages = sorted(timed(browser, page_url)[0] for _ in range(calls))
    api = requests.Session()
    bearer = {"Authorization": f"Bearer {token}"}
    results_url = f"{base}/v1/experiments/{key}/results"
    timed(api, results_url, bearer)
    baseline = sorted(timed(api, results_url, bearer)[0] for _ in range(calls))
    return pages, baseline, html


def timings(label: str, values: list[float]) -> str:
    p95 = values[int(0.95 * (len(values) - 1))]
    return row(label, f"{median(values):.1f}", f"{p95:.1f}", f"{values[-1]:.1f}")


def main() -> bool:
    with kairos_server() as (base, token, _):
        for body in (EXPERIMENT, BANDIT):
            call("POST", f"{base}/v1/experiments", token, body)
            call("POST", f"{base}/v1/experiments/{body['key']}/start", token)
        events = fill(base, token, EXPERIMENT["key"], HOURS, UNITS_PER_HOUR, reweight=False)
        fill(base, token, BANDIT["key"], BANDIT_HOURS, BANDIT_UNITS_PER_HOUR, reweight=True)
        browser = signed_in(base, token)
        pages, baseline, html = measure(base, token, browser, EXPERIMENT["key"], CALLS)
        bandit_pages, bandit_baseline, bandit_html = measure(
            base, token, browser, BANDIT["key"], BANDIT_CALLS
        )
    print(
        f"{SERVER}; {SEGMENTS + 1} segments × 8 variants + holdout; fixed split: "
        f"{HOURS * UNITS_PER_HOUR:,} units over {HOURS} h, {events:,} outcomes, {CALLS} calls "
        f"each; bandit: {BANDIT_HOURS} periods, {BANDIT_HOURS * BANDIT_UNITS_PER_HOUR:,} units, "
        f"{BANDIT_CALLS} calls each"
    )
    plot = b'role="img"'
    print(
        f"pages: {len(html):,} bytes with {html.count(plot)} SVG plots (fixed), "
        f"{len(bandit_html):,} bytes with {bandit_html.count(plot)} (bandit)"
    )
    print(row("", "median ms", "p95 ms", "max ms"))
    print(timings("fixed: GET /ui/experiments/{key}", pages))
    print(timings("fixed: baseline GET …/results (its data)", baseline))
    print(timings("bandit: GET /ui/experiments/{key}", bandit_pages))
    print(timings("bandit: baseline GET …/results", bandit_baseline))
    print(f"target: median < {TARGET_MS:.0f} ms, fixed split and bandit")
    return median(pages) < TARGET_MS and median(bandit_pages) < TARGET_MS
