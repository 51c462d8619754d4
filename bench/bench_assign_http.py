"""Single assignments over HTTP vs a bare Flask JSON echo, same gunicorn settings, same run.

Target: Kairos ≥ 0.6 × the echo's requests/s, and p99 < 25 ms, at 16 connections.
Each request assigns a new unit (the costly case: a stored, sticky assignment and its counts)
with a random-looking id, as real user ids are.
"""

import os

from bench.common import SERVER, call, echo_server, kairos_server, median, row, wrk

CONNECTIONS, SECONDS, ROUNDS = 16, 10, int(os.environ.get("KAIROS_BENCH_ROUNDS", 3))

SCRIPT = """
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
request = function()
  counter = counter + 1
  local id = tid * 100000000 + counter
  -- Random-looking user ids, as real ones are (sequential ids would flatter the indexes).
  local unit = string.format("%08x%08x", math.random(0, 0x7fffffff), id)
  local body = '{"experiment": "bench-single", "unit_id": "user-' .. unit ..
    '", "attributes": {"days_since_signup": ' .. (id % 30) ..
    '}, "timezone": "Europe/Paris"}'
  return wrk.format("POST", "%PATH%", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer %TOKEN%"}, body)
end
"""


def lua(path: str, token: str = "") -> str:
    return SCRIPT.replace("%PATH%", path).replace("%TOKEN%", token)


EXPERIMENT = {
    "key": "bench-single",
    "name": "Bench: single assignments",
    "variants": [
        {
            "key": "morning-push",
            "factors": {"timing": "morning", "channel": "push"},
            "payload": {"send": {"local_hour": 9}},
        },
        {
            "key": "evening-email",
            "factors": {"timing": "evening", "channel": "email"},
            "payload": {"send": {"local_hour": 19}},
        },
    ],
    "control": "morning-push",
    "segments": [
        {"key": "newcomers", "rule": {"attribute": "days_since_signup", "op": "lt", "value": 14}}
    ],
    "metrics": [{"key": "activated", "role": "primary"}],
    "holdout": 0.05,
    "quiet_hours": {"start": 21, "end": 8},
}


def main() -> bool:
    kairos_runs, echo_runs = [], []
    with kairos_server() as (base, token, _), echo_server() as echo:
        call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
        call("POST", f"{base}/v1/experiments/bench-single/start", token)
        # Warm up both servers (imports, caches, connections).
        wrk(f"{base}/v1/assignments", lua("/v1/assignments", token), CONNECTIONS, 2)
        wrk(f"{echo}/echo", lua("/echo"), CONNECTIONS, 2)
        for _ in range(ROUNDS):  # alternate, so that drift hits both alike
            kairos_runs.append(
                wrk(f"{base}/v1/assignments", lua("/v1/assignments", token), CONNECTIONS, SECONDS)
            )
            echo_runs.append(wrk(f"{echo}/echo", lua("/echo"), CONNECTIONS, SECONDS))
    errors = sum(r["non_2xx"] for r in kairos_runs)
    k_rps, e_rps = median([r["rps"] for r in kairos_runs]), median([r["rps"] for r in echo_runs])
    k_p99 = median([r["p99"] for r in kairos_runs])
    ratio = k_rps / e_rps
    print(f"{ROUNDS} rounds of {SECONDS} s, {CONNECTIONS} connections, {SERVER}, SQLite; medians")
    print(row("", "requests/s", "p50 ms", "p99 ms"))
    print(
        row(
            "Kairos POST /v1/assignments (new unit)",
            f"{k_rps:,.0f}",
            f"{median([r['p50'] for r in kairos_runs]):.2f}",
            f"{k_p99:.2f}",
        )
    )
    print(
        row(
            "baseline: bare Flask JSON echo",
            f"{e_rps:,.0f}",
            f"{median([r['p50'] for r in echo_runs]):.2f}",
            f"{median([r['p99'] for r in echo_runs]):.2f}",
        )
    )
    print(
        f"ratio {ratio:.2f} (target ≥ 0.60); p99 {k_p99:.1f} ms (target < 25); "
        f"non-2xx answers: {errors}"
    )
    return ratio >= 0.6 and k_p99 < 25 and errors == 0
