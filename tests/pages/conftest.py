"""Page tests run on SQLite only: the pages read through the same domain functions as the
API, whose storage is tested on both databases (tests/experiments/test_overview.py covers the
pages' own read model on both)."""

import re

import pytest

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def backend():
    return "sqlite"


@pytest.fixture
def tokens(keys) -> dict[str, str]:
    """The token of one key per scope."""
    return {scope: header["Authorization"].split(" ", 1)[1] for scope, header in keys.items()}


def csrf_of(client, path: str = "/ui/login") -> str:
    response = client.get(path)
    found = CSRF.search(response.get_data(as_text=True))
    assert found, f"no form token on {path} ({response.status_code})"
    return found.group(1)


def sign_in(client, token: str):
    response = client.post("/ui/login", data={"token": token, "csrf_token": csrf_of(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


@pytest.fixture
def signed_in(app, tokens):
    """signed_in(scope): a client signed in with that scope's key."""

    def make(scope: str):
        client = app.test_client()
        sign_in(client, tokens[scope])
        return client

    return make
