"""Single assignments over HTTP vs a bare Flask JSON echo, same gunicorn settings, same run.

Kairos on SQLite and on PostgreSQL (a throwaway server, durable settings: see bench/common.py)
side by side. Target (SQLite): Kairos ≥ 0.6 × the echo's requests/s, and p99 < 25 ms, at 16
connections; PostgreSQL's figures and its ratio to SQLite are shown beside them.
Each request assigns a new unit (the costly case: a stored, sticky assignment and its counts)
with a random-looking id, as real user ids are.
"""

import os

from bench.common import (
    DURABILITY,
    SERVER,
    call,
    echo_server,
    kairos_server,
    median,
    postgres_server,
    postgres_settings_line,
    row,
    wrk,
)

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
    runs: dict[str, list[dict]] = {"SQLite": [], "PostgreSQL": [], "echo": []}
    with (
        postgres_server() as server,
        kairos_server() as (sqlite_base, sqlite_token, _),
        kairos_server(server) as (pg_base, pg_token, _),
        echo_server() as echo,
    ):
        targets = {
            "SQLite": (f"{sqlite_base}/v1/assignments", lua("/v1/assignments", sqlite_token)),
            "PostgreSQL": (f"{pg_base}/v1/assignments", lua("/v1/assignments", pg_token)),
            "echo": (f"{echo}/echo", lua("/echo")),
        }
        for base, token in ((sqlite_base, sqlite_token), (pg_base, pg_token)):
            call("POST", f"{base}/v1/experiments", token, EXPERIMENT)
            call("POST", f"{base}/v1/experiments/bench-single/start", token)
        for url, script in targets.values():  # warm up (imports, caches, connections)
            wrk(url, script, CONNECTIONS, 2)
        for _ in range(ROUNDS):  # alternate, so that drift hits each alike
            for name, (url, script) in targets.items():
                runs[name].append(wrk(url, script, CONNECTIONS, SECONDS))

    def med(name: str, key: str) -> float:
        return median([r[key] for r in runs[name]])

    errors = {name: sum(r["non_2xx"] for r in runs[name]) for name in ("SQLite", "PostgreSQL")}
    ratio = med("SQLite", "rps") / med("echo", "rps")
    k_p99 = med("SQLite", "p99")
    print(f"{ROUNDS} rounds of {SECONDS} s, {CONNECTIONS} connections, {SERVER}; medians")
    print(DURABILITY)
    print(postgres_settings_line())
    widths = (44, 14, 10, 10, 8)
    print(row("", "requests/s", "p50 ms", "p99 ms", "non-2xx", widths=widths))
    for name, label in (
        ("SQLite", "Kairos POST /v1/assignments, SQLite"),
        ("PostgreSQL", "Kairos POST /v1/assignments, PostgreSQL"),
        ("echo", "baseline: bare Flask JSON echo"),
    ):
        print(
            row(
                label,
                f"{med(name, 'rps'):,.0f}",
                f"{med(name, 'p50'):.2f}",
                f"{med(name, 'p99'):.2f}",
                errors.get(name, ""),
                widths=widths,
            )
        )
    print(
        f"PostgreSQL/SQLite requests/s: {med('PostgreSQL', 'rps') / med('SQLite', 'rps'):.2f}×; "
        f"PostgreSQL p99 {med('PostgreSQL', 'p99'):.1f} ms"
    )
    print(
        f"SQLite: ratio to echo {ratio:.2f} (target ≥ 0.60); p99 {k_p99:.1f} ms (target < 25); "
        "PostgreSQL shown beside it (no target)"
    )
    return ratio >= 0.6 and k_p99 < 25 and errors["SQLite"] == 0 and errors["PostgreSQL"] == 0
