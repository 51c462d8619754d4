"""The simulator driving the app through the test client: what a second run does."""

from simulator.client import KairosClient, SimulationError
from simulator.run import simulate

KEY = "simulated-onboarding"


class InProcessKairos(KairosClient):
    """The simulator's HTTP calls, answered by the Flask test client."""

    def __init__(self, client, headers):
        super().__init__("", "")
        self.client = client
        self.headers = headers

    def call(self, method, path, body=None, ok=(200, 201, 202)):
        response = self.client.open(path, method=method, json=body, headers=self.headers)
        if response.status_code not in ok:
            raise SimulationError(f"{method} {path} → {response.status_code}: {response.json}")
        return response.status_code, response.json


def units_assigned(client, keys) -> int:
    results = client.get(f"/v1/experiments/{KEY}/results", headers=keys["read"]).json
    (everyone,) = [s for s in results["segments"] if s["segment"] == "all"]
    return sum(row["units"] for row in everyone["variants"])  # the holdout's row included


def test_a_second_run_brings_new_users_and_continues_the_experiments_clock(client, keys):
    kairos = InProcessKairos(client, keys["admin"])
    simulate(kairos, key=KEY, hours=10, users_per_hour=200, echo=lambda *_: None)
    before = client.get(f"/v1/experiments/{KEY}", headers=keys["read"]).json
    assert units_assigned(client, keys) == 2_000

    printed = []
    second = simulate(kairos, key=KEY, hours=3, users_per_hour=200, echo=printed.append)

    # Same seed, new users: none of them is one of the first run's sticky units.
    assert units_assigned(client, keys) == 2_600
    # Its clock starts after the first run's, so the hourly reweights go on at once…
    after = client.get(f"/v1/experiments/{KEY}", headers=keys["read"]).json
    assert after["period"] >= before["period"] + 2, (before["period"], after["period"])
    assert after["updated_at"] > before["updated_at"]
    # …and its users get the weights the bandit has learned, not the first hours' uniform 1/8.
    top = {segment: max(weights.values()) for segment, weights in second.weights.items()}
    assert max(top.values()) > 0.2, second.weights
    assert any(line.startswith("Simulated clock: ") for line in printed), printed
