"""Accuracy of `prob_beat_control` on small samples: Kairos vs the exact Beta-Binomial value,
with GrowthBook's gbstats (its Bayesian engine) on the same cases.

Exact: P(p_variant > p_control) under Beta(1, 1) priors, by Evan Miller's closed-form sum.
Kairos: the value the results answer reports (analysis/summary.py, grid integration).
gbstats 0.8: `EffectBayesianABTest` (a Normal approximation with a flat prior), relative and
absolute, run in its own virtualenv (.bench-venvs/gbstats, made on first use) because it pins
an older numpy. Cases where the control has no conversions are left out: gbstats answers 0.5
there by design; where the variant has none, gbstats sees zero variance and answers 0.5
too, so its error is also shown without those cases.

Target: Kairos's maximum absolute error ≤ 0.005.
"""

import json
import subprocess
import sys
import time

import numpy as np

from analysis.conjugate import prob_beat_closed_form
from analysis.summary import summarize_binary
from bench.common import ROOT, row

TARGET = 0.005
GBSTATS = "gbstats==0.8.0"
VENV = ROOT / ".bench-venvs" / "gbstats"


def cases() -> list[tuple[int, int, int, int]]:
    found = []
    for n in (10, 20, 50, 100, 200, 500, 1000):
        for rate in (0.03, 0.1, 0.3, 0.5):
            c0 = round(n * rate)
            if c0 == 0:
                continue
            for c1 in {max(0, c0 - 2), c0, c0 + 1, c0 + 3, round(1.5 * c0) + 1}:
                if c1 <= n:
                    found.append((n, c0, n, c1))
    return found


def gbstats_python() -> str:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"(creating {VENV.relative_to(ROOT)} with {GBSTATS}; once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", GBSTATS], check=True, capture_output=True
        )
    return str(python)


def main() -> bool:
    chosen = cases()
    exact = np.array(
        [
            prob_beat_closed_form(1 + c1, 1 + n1 - c1, 1 + c0, 1 + n0 - c0)
            for n0, c0, n1, c1 in chosen
        ]
    )
    started = time.perf_counter()
    ours = np.array(
        [
            summarize_binary([n0, n1], [c0, c1], control=0)[1].prob_beat_control
            for n0, c0, n1, c1 in chosen
        ]
    )
    elapsed = (time.perf_counter() - started) / len(chosen) * 1000
    answer = subprocess.run(
        [gbstats_python(), str(ROOT / "bench" / "gbstats_cases.py")],
        input=json.dumps(chosen),
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = {k: np.array(v) for k, v in json.loads(answer.stdout).items()}

    print(f"{len(chosen)} cases: 10 to 1,000 units per arm, control rates 3% to 50%")
    converted = np.array([c1 > 0 for _, _, _, c1 in chosen])
    widths = (30, 14, 16, 22, 18)
    print(
        row(
            "P(variant beats control)",
            "max |error|",
            "median |error|",
            "max, both converted",
            "worst case",
            widths=widths,
        )
    )
    ok = True
    for name, values in [
        ("Kairos (grid integration)", ours),
        ("gbstats 0.8, relative", theirs["relative"]),
        ("gbstats 0.8, absolute", theirs["absolute"]),
    ]:
        errors = np.abs(values - exact)
        worst = chosen[int(np.argmax(errors))]
        print(
            row(
                name,
                f"{errors.max():.2e}",
                f"{np.median(errors):.2e}",
                f"{errors[converted].max():.2e}",
                f"{worst}",
                widths=widths,
            ),
            flush=True,
        )
        if name.startswith("Kairos"):
            ok = errors.max() <= TARGET
    print(f"Kairos: {elapsed:.2f} ms per comparison; target: max |error| ≤ {TARGET}")
    return ok
