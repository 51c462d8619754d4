"""README's "Scaling out" recipe runs as written: two app nodes and a worker on one PostgreSQL.

The recipe is the ```sh block between `<!-- scale-out -->` and `<!-- /scale-out -->`. The test
runs it in bash with only the database URL and the two ports replaced (a throwaway database of
the suite's cluster, free ports), then uses the nodes as a journey engine would: an experiment
created on one node answers on the other, a unit keeps its variant on both, an outcome sent to
one is counted in the results read from the other.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import create_postgres_database
from tests.pg import free_port
from tests.servers import wait_for_health

pytestmark = pytest.mark.postgres

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- scale-out -->", "<!-- /scale-out -->"
KAIROS_BIN = str(Path(os.sys.executable).parent)


def recipe() -> str:
    text = README.read_text()
    region = text[text.index(BEGIN) : text.index(END)]
    blocks = re.findall(r"^```sh\n(.*?)^```\s*$", region, re.S | re.M)
    assert len(blocks) == 1, "the scale-out recipe is one ```sh block"
    return blocks[0]


def test_the_scale_out_recipe_serves_one_state_from_two_nodes(postgres_url, tmp_path):
    url = create_postgres_database(postgres_url, "kairos_scale_out")
    ports = free_port(), free_port()
    script = recipe()
    assert "KAIROS_DATABASE_URL=" in script and "--port 8001" in script and "--port 8002" in script
    script = re.sub(r"KAIROS_DATABASE_URL=\S+", f"KAIROS_DATABASE_URL={url}", script)
    script = script.replace("--port 8001", f"--port {ports[0]}")
    script = script.replace("--port 8002", f"--port {ports[1]}")
    log = tmp_path / "recipe.log"
    env = {**os.environ, "PATH": f"{KAIROS_BIN}:{os.environ['PATH']}"}
    with log.open("w") as out:
        shell = subprocess.Popen(
            ["bash", "-e", "-c", script + "\nwait\n"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        one, two = (f"http://127.0.0.1:{p}" for p in ports)
        wait_for_health(one, deadline, log.read_text)
        wait_for_health(two, deadline, log.read_text)
        token = re.search(r"^(kairos_\S+)\s*$", log.read_text(), re.M).group(1)
        auth = {"Authorization": f"Bearer {token}"}

        created = requests.post(
            f"{one}/v1/experiments",
            json={
                "key": "renewal-reminder",
                "name": "Renewal reminder",
                "allocation": "fixed",
                "factors": {"channel": ["email", "push"]},
                "metrics": [{"key": "renewed", "role": "primary"}],
            },
            headers=auth,
        )
        assert created.status_code == 201, created.text
        started = requests.post(f"{two}/v1/experiments/renewal-reminder/start", headers=auth)
        assert started.status_code == 200, started.text

        units = [f"user-{i}" for i in range(40)]
        body = {"experiment": "renewal-reminder", "units": [{"unit_id": u} for u in units]}
        first = requests.post(f"{one}/v1/assignments/batch", json=body, headers=auth).json()
        again = requests.post(f"{two}/v1/assignments/batch", json=body, headers=auth).json()
        variants = {a["unit_id"]: a["variant"] for a in first["assignments"]}
        assert {a["unit_id"]: a["variant"] for a in again["assignments"]} == variants

        event = {
            "event_id": "renewal-user-1",
            "experiment": "renewal-reminder",
            "unit_id": "user-1",
            "metric": "renewed",
            "value": 1,
        }
        sent = requests.post(f"{two}/v1/outcomes", json=event, headers=auth).json()
        resent = requests.post(f"{one}/v1/outcomes", json=event, headers=auth).json()
        assert (sent["accepted"], resent["duplicates"]) == (1, 1)
        results = requests.get(f"{one}/v1/experiments/renewal-reminder/results", headers=auth)
        everyone = results.json()["segments"][0]
        assert everyone["units"] == len(units)
        assert sum(arm["conversions"] for arm in everyone["variants"]) == 1

        # The worker the recipe started is polling the same database.
        workers = subprocess.run(
            ["pgrep", "-s", str(shell.pid), "-f", "kairos worker"], capture_output=True, text=True
        )
        assert workers.stdout.strip(), log.read_text()
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        try:
            shell.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
