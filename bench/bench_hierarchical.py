"""A hierarchical PyMC job for 20 segments × 4 variants, cold, through a served instance.

`kairos serve` on a fresh SQLite file with fresh compile caches (PyTensor's compile directory
in a temp dir; JAX keeps none between processes), so the first job pays for importing PyMC and
compiling the model, as on a fresh machine. The experiment is filled through the API (24,000
units, their outcomes); the job runs in the server's analysis thread with the default sampler
settings (4 chains × 500 tuning + 600 draws). Timed from POST …/analyses to `succeeded`.

Target: < 60 s cold on 2 cores, max R-hat ≤ 1.01, no divergences. A second, warm job is timed
for scale.
"""

import math
import os
import random
import tempfile
import time

from bench.common import (
    SERVER,
    assign_all,
    call,
    cohorts,
    experiment,
    kairos_server,
    outcome,
    report_outcomes,
    row,
)

SEGMENTS, PER_SEGMENT, TARGET_SECONDS = 19, 1_200, 60.0  # 19 + `other` = 20 segments

EXPERIMENT = experiment(
    "bench-hierarchical",
    "hierarchical job",
    segments=cohorts(SEGMENTS),
    metrics=[{"key": "activated", "role": "primary"}],
)


def fill(base: str, token: str) -> int:
    rng = random.Random(11)
    # Segment baselines around 8%; the variants lift the logit by 0, +0.1, +0.2, −0.1, give or
    # take a little per segment.
    effects = {
        "timing=morning,channel=email": 0.0,
        "timing=morning,channel=push": 0.1,
        "timing=evening,channel=email": 0.2,
        "timing=evening,channel=push": -0.1,
    }
    baselines = [rng.gauss(-2.4, 0.4) for _ in range(SEGMENTS + 1)]
    units = [
        {"unit_id": f"u{s}-{i}", "attributes": {"cohort": s if s < SEGMENTS else 999}}
        for s in range(SEGMENTS + 1)
        for i in range(PER_SEGMENT)
    ]
    events = []
    for a in assign_all(base, token, EXPERIMENT["key"], units):
        segment = int(a["unit_id"][1:].split("-")[0])
        logit = baselines[segment] + effects[a["variant"]] + rng.gauss(0, 0.05)
        if rng.random() < 1 / (1 + math.exp(-logit)):
            events.append(outcome(a, "activated"))
    report_outcomes(base, token, events)
    return len(events)


def run_job(base: str, token: str) -> tuple[float, dict]:
    started = time.perf_counter()
    job = call(
        "POST",
        f"{base}/v1/experiments/{EXPERIMENT['key']}/analyses",
        token,
        {"method": "hierarchical"},
    )
    stage = None
    while job["status"] in ("queued", "running"):
        time.sleep(0.25)
        job = call("GET", f"{base}/v1/analyses/{job['id']}", token)
        if job["stage"] != stage:
            stage = job["stage"]
            print(
                f"  {time.perf_counter() - started:5.1f} s  {stage} ({job['progress']:.0%})",
                flush=True,
            )
    assert job["status"] == "succeeded", job.get("error")
    return time.perf_counter() - started, job["result"]


def main() -> bool:
    os.environ["PYTENSOR_FLAGS"] = f"compiledir={tempfile.mkdtemp(prefix='kairos-pytensor-')}"
    os.environ.pop("KAIROS_ANALYSIS_DRAWS", None)
    os.environ.pop("KAIROS_ANALYSIS_TUNE", None)
    with kairos_server() as (base, token, _):
        call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{base}/v1/experiments/{EXPERIMENT['key']}/start", token)
        events = fill(base, token)
        print(
            f"{SERVER}, analysis thread; {SEGMENTS + 1} segments × 4 variants, "
            f"{(SEGMENTS + 1) * PER_SEGMENT:,} units, {events:,} conversions"
        )
        print("cold job:")
        cold, result = run_job(base, token)
        print("warm job:")
        warm, again = run_job(base, token)
    d = result["diagnostics"]
    print(row("", "seconds", "max R-hat", "min ESS", "divergences", widths=(24, 12, 12, 12, 12)))
    for name, seconds, r in (
        ("cold (first job)", cold, result),
        ("warm (second job)", warm, again),
    ):
        x = r["diagnostics"]
        print(
            row(
                name,
                f"{seconds:.1f}",
                f"{x['max_rhat']:.4f}",
                f"{x['min_ess']:.0f}",
                x["divergences"],
                widths=(24, 12, 12, 12, 12),
            )
        )
    typical = result["segments"][0]["variants"]
    print(
        "all segments, lift vs control: "
        + ", ".join(f"{v['variant']} {v['lift']['mean']:+.1%}" for v in typical if v["lift"])
    )
    print(f"target: cold < {TARGET_SECONDS:.0f} s, max R-hat ≤ 1.01, no divergences")
    return cold < TARGET_SECONDS and d["max_rhat"] <= 1.01 and d["divergences"] == 0
