"""Path parameters: an experiment's key and a numeric id, matched by their rules in the URL.

A path that cannot name anything is a 404 before any view runs: a key that is not a slug
(a newline, a NUL that PostgreSQL refuses) or an id beyond what its column holds never
reaches a query.
"""

from werkzeug.routing import BaseConverter, IntegerConverter

from experiments import bounds


class KeyConverter(BaseConverter):
    """An experiment's key: a slug (bounds.SLUG_PATTERN without its anchors; routing anchors it)."""

    regex = bounds.SLUG_PATTERN.removeprefix("^").removesuffix("$")


class IdConverter(IntegerConverter):
    """A stored row's id: 1 to 2^31 − 1 (an SQL `integer`)."""

    def __init__(self, map, *args, **kwargs):
        super().__init__(map, min=1, max=bounds.MAX_INTEGER)


def key_parameter(_converter) -> dict:
    return {"type": "string", "pattern": bounds.SLUG_PATTERN}


def id_parameter(_converter) -> dict:
    return {"type": "integer", "minimum": 1, "maximum": bounds.MAX_INTEGER}


def register(app, api) -> None:
    app.url_map.converters["key"] = KeyConverter
    app.url_map.converters["id"] = IdConverter
    api.register_converter(KeyConverter, key_parameter)
    api.register_converter(IdConverter, id_parameter)
