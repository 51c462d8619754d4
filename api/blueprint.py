"""Request bodies: the blueprint every resource uses, with bodies parsed by orjson (several
times faster than the standard library on a 10,000-unit batch), and the refusals every body
gets the same way: 415 if it is not JSON, 413 if it is too large, 400 if it cannot be read or
parsed.
A body that parses but breaks a field's rule is a 422, from the schema that states the rule.
"""

from http import HTTPStatus

import flask_smorest
import orjson
from flask import Request, request
from flask_smorest import abort
from flask_smorest.pagination import PaginationMetadataSchema
from gunicorn.http.errors import NoMoreData, ParseException
from marshmallow import Schema, ValidationError, validates_schema
from webargs import core
from webargs.flaskparser import FlaskParser

from api.pages.session import is_page
from experiments import bounds

INVALID_JSON = "The body is not valid JSON ({error})."


def has_body(req: Request) -> bool:
    """Whether the request carries a body (a length, or chunks of unknown total length)."""
    return bool(req.content_length) or "chunked" in req.headers.get("Transfer-Encoding", "")


def refuse_bodies_that_are_not_json() -> None:
    """Run before every request: a body sent as anything but JSON is a 415, whatever the route
    (a view that reads no body would otherwise ignore it silently). The pages (/ui) take
    HTML forms instead, on whatever path under /ui (one no page matches is the pages' 404 or
    405, not a 415)."""
    if is_page(request.path):
        return
    if has_body(request) and not request.is_json:
        abort(415)


def body_bytes(req: Request) -> bytes:
    """The body, whole: a 413 beyond MAX_CONTENT_LENGTH, a 400 if it cannot be read whole.

    werkzeug refuses an announced length beyond the limit, but stops reading a chunked body at
    the limit without a word, and a body shorter than its announced length (the client closed
    early) reads as what arrived: either way the request would be judged on part of its body.
    Broken chunked encoding raises from the server's reader."""
    try:
        data = req.get_data(cache=True)
    except (ParseException, NoMoreData) as error:
        abort(400, message=f"The body could not be read ({error}).")
    limit = req.max_content_length
    if limit is not None and len(data) >= limit:
        abort(413)
    if req.content_length is not None and len(data) != req.content_length:
        abort(400, message="The body is shorter than its Content-Length.")
    return data


def page_window(pagination_parameters) -> tuple[int, int]:
    """(offset, limit) of a requested page. Any page number is valid; beyond the last one the
    page is empty, and the offset stops where a 64-bit SQL integer does."""
    offset = min(pagination_parameters.first_item, bounds.MAX_OFFSET)
    return offset, pagination_parameters.page_size


# Read by `paginate`, not by a view's query schema.
PAGINATION_PARAMETERS = frozenset({"page", "page_size"})


class QuerySchema(Schema):
    """A query's parameters. One the schema does not know is a 422 that names it, as an
    unknown field of a body is: a misspelt filter (`?experimnt=…`) would otherwise filter
    nothing, silently. `page` and `page_size` are `paginate`'s."""

    @validates_schema(pass_original=True)
    def refuse_unknown_parameters(self, _data, original, **_kwargs):
        known = {field.data_key or name for name, field in self.load_fields.items()}
        unknown = sorted(set(original) - known - PAGINATION_PARAMETERS)
        if unknown:
            raise ValidationError({name: ["Unknown parameter."] for name in unknown})


class OrjsonFlaskParser(FlaskParser):
    def _raw_load_json(self, req):
        if not has_body(req):
            return core.missing
        data = body_bytes(req)
        if not data:
            return core.missing
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            abort(400, message=INVALID_JSON.format(error=error))


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = OrjsonFlaskParser()

    def _document_pagination_metadata(self, spec, resp_doc):
        """The X-Pagination header carries a JSON object: documented as JSON content, not as a
        header-style object (which a client would read as comma-separated key=value pairs)."""
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = {
            "description": "Pagination metadata, as a JSON object",
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }

    def register_views_in_doc(self, api, app, spec, *, name, parameters):
        """Every operation documents the refusals it can answer, by what it takes: 404 where
        its path names a resource, 400 and 413 where it reads a body, 415 and 503 everywhere (a
        body that is not JSON; the database busy or unreachable). 401 and 403 come with
        `requires`, 422 with the arguments, 409 with `alt_response` on the views that change a
        state; there is no catch-all "default", so an answer the document does not list is a
        bug the generated tests find (tests/api/test_openapi_properties.py)."""
        for endpoint, operations in self._docs.items():
            rule = next(app.url_map.iter_rules(f"{name}.{endpoint}"))
            for method, operation in operations.items():
                if method == "parameters":
                    continue
                codes = [415, 503]
                if rule.arguments:
                    codes.append(404)
                arguments = operation.get("arguments", {}).get("parameters", [])
                if any(argument["in"] == "json" for argument in arguments):
                    codes += [400, 413]
                responses = operation.setdefault("manual_doc", {}).setdefault("responses", {})
                for code in codes:
                    responses.setdefault(code, HTTPStatus(code).name)
        super().register_views_in_doc(api, app, spec, name=name, parameters=parameters)
