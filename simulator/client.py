"""`KairosClient`: the simulator's one way to reach Kairos, JSON over HTTP with a bearer token.

Standard library only (urllib), so the simulator runs wherever Python does and knows Kairos
only by its HTTP contract. Every failure, an error status or an unreachable server, comes out
as a `SimulationError` whose message `kairos simulate` prints.
"""

import json
import urllib.error
import urllib.request


class SimulationError(Exception):
    """Why the simulation cannot go on: Kairos refused a call or cannot be reached, or the
    experiment is concluded."""


class KairosClient:
    """A running Kairos at `base_url`, called with an API key's `token`."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body=None, ok=(200, 201, 202)) -> tuple[int, dict]:
        """Send `body` as JSON; return the status and the JSON answer, or raise
        SimulationError if the status is not one of `ok`."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            payload = json.loads(error.read() or b"null")
            if error.code in ok:
                return error.code, payload
            message = (payload or {}).get("message", "")
            raise SimulationError(f"{method} {path} → {error.code}: {message}") from None
        except urllib.error.URLError as error:
            raise SimulationError(
                f"Kairos is not reachable at {self.base_url}: {error.reason}"
            ) from None
