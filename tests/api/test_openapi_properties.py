"""Generated hostile input from the app's own OpenAPI document (schemathesis): every operation,
with cases that follow its schema and cases that break it, on SQLite and PostgreSQL. Each
answer must be no 5xx, a status the document lists for that operation (there is no catch-all
"default"), of the documented content type and schema; and a refused request (4xx) must leave
every table as it was."""

import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode
from sqlalchemy import func, select
from sqlmodel import SQLModel

from api import create_app
from tests.utils.assignments import start
from tests.utils.factories import experiment_body

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


def _document() -> dict:
    """The OpenAPI document, as the app serves it (no database is opened to build it)."""
    with tempfile.TemporaryDirectory() as folder:
        database_url = f"sqlite:///{folder}/schema.db"
        app = create_app({"TESTING": True, "KAIROS_DATABASE_URL": database_url, "SECRET_KEY": "x"})
        return app.test_client().get("/openapi.json").json


SCHEMA = schemathesis.openapi.from_dict(_document())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Negative cases break what an operation takes: one that takes nothing has none.
TAKES_NOTHING = {"/health", "/health/live", "/metrics"}
CASES = [
    (operation, mode)
    for operation in OPERATIONS
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or operation.path not in TAKES_NOTHING
]


def row_counts(database) -> dict[str, int]:
    with database.session() as session:
        return {
            table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }


@pytest.mark.parametrize(
    ("operation", "mode"), CASES, ids=[f"{o.label} {m.value}" for o, m in CASES]
)
def test_every_operation_answers_as_documented(app, client, keys, database, operation, mode):
    key = start(client, keys, experiment_body())["key"]
    cases = operation.as_strategy(mode)
    if "{key}" in operation.path:  # half the cases on an experiment that exists
        cases = st.one_of(cases, operation.as_strategy(mode, path_parameters={"key": key}))

    @given(case=cases)
    @settings(
        max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def answer(case):
        before = row_counts(database)
        response = case.call(app=app, headers=keys["admin"])
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            assert row_counts(database) == before, (case.as_curl_command(), response.text)

    answer()
