"""`KairosClient`: JSON over HTTP with a bearer token; every failure is a SimulationError."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from simulator.client import KairosClient, SimulationError


class EchoOrRefuse(BaseHTTPRequestHandler):
    """Answers /echo with what it was sent (token and body), anything else with a 404."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/echo":
            self.answer(201, {"authorization": self.headers["Authorization"], "body": body})
        else:
            self.answer(404, {"message": "Experiment 'x' does not exist."})

    def answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server_url():
    server = HTTPServer(("127.0.0.1", 0), EchoOrRefuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_call_sends_json_with_the_bearer_token_and_returns_status_and_answer(server_url):
    status, answer = KairosClient(server_url, "kairos_t").call("POST", "/echo", {"a": 1})
    assert status == 201
    assert answer == {"authorization": "Bearer kairos_t", "body": {"a": 1}}


def test_an_error_status_is_a_simulation_error_with_kairos_message(server_url):
    with pytest.raises(SimulationError) as raised:
        KairosClient(server_url, "t").call("POST", "/missing", {})
    assert str(raised.value) == "POST /missing → 404: Experiment 'x' does not exist."


def test_an_expected_error_status_is_returned(server_url):
    status, answer = KairosClient(server_url, "t").call("POST", "/missing", {}, ok=(200, 404))
    assert (status, answer["message"]) == (404, "Experiment 'x' does not exist.")


def test_an_unreachable_kairos_is_a_simulation_error_naming_the_url():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(SimulationError) as raised:
        KairosClient(f"http://127.0.0.1:{port}/", "t").call("GET", "/v1/experiments")
    assert str(raised.value).startswith(f"Kairos is not reachable at http://127.0.0.1:{port}: ")
