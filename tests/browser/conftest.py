"""A served Kairos and a real headless browser: Debian's chromium, driven by Playwright.

No browser is downloaded: Playwright launches the system's chromium (`make test` installs it
through scripts/ensure-chromium). Without it these tests fail, saying so; set
KAIROS_BROWSER_TESTS=skip to skip them on purpose. Screenshots are kept under
test-artifacts/screenshots (KAIROS_TEST_ARTIFACTS to choose), which git ignores.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from api import create_app
from api.db import get_database
from experiments.keys import create_key

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    if os.environ.get("KAIROS_BROWSER_TESTS") == "skip":
        pytest.skip("KAIROS_BROWSER_TESTS=skip: browser tests skipped on request")
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "No chromium found for the browser tests: run scripts/ensure-chromium (as root it "
        "installs Debian's chromium), or set KAIROS_BROWSER_TESTS=skip to skip them."
    )


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("KAIROS_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def served(database_url, tmp_path):
    """Kairos served over HTTP on a free loopback port: (base URL, app)."""
    app = create_app(
        {"KAIROS_DATABASE_URL": database_url, "SECRET_KEY": "browser", "KAIROS_CACHE_SECONDS": 0}
    )
    app.instance_path = str(tmp_path / "instance")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join()
    with app.app_context():
        get_database().dispose()


@pytest.fixture
def backend():
    return "sqlite"


@pytest.fixture
def served_tokens(served) -> dict[str, str]:
    _, app = served
    tokens = {}
    with app.app_context(), get_database().session(write=True) as session:
        for scope in ("manage", "assign", "read"):
            _, tokens[scope] = create_key(session=session, name=f"{scope}-key", scopes=[scope])
    return tokens
