"""The request rules of experiments/bounds.py as marshmallow fields and validators.

Every field a request schema declares is built from these (tests/api/test_request_bounds.py
checks that each string has a length and a character rule, each number a finite range, each
free-form object a depth and size bound), so that no value outside the rules reaches a service.
"""

from marshmallow import ValidationError, fields, validate

from experiments import bounds


class FullMatch(validate.Regexp):
    """A regular expression the whole value must match. marshmallow's Regexp uses `re.match`,
    with which `$` also matches before a final newline: "key\\n" passed a slug pattern."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Identifier(validate.Length):
    """1 to `max` printable characters (see experiments/bounds.py). A Length, so that the
    OpenAPI document states the bounds."""

    def __init__(self, max_length: int = bounds.MAX_IDENTIFIER):
        super().__init__(1, max_length)
        self.error = f"Must be 1 to {max_length} characters, {bounds.IDENTIFIER_RULE}."

    def __call__(self, value):
        if not bounds.is_identifier(value, self.max):
            raise ValidationError(self.error)
        return value


class Text(validate.Length):
    """Free text of `min_length` to `max_length` characters, without control characters but
    tab and newline."""

    def __init__(self, max_length: int, min_length: int = 0):
        super().__init__(min_length, max_length)

    def __call__(self, value):
        super().__call__(value)
        problem = bounds.text_problem(value)
        if problem:
            raise ValidationError(problem)
        return value


class TimeZone(validate.Validator):
    """An IANA time zone name (Europe/Paris, America/New_York, UTC)."""

    @staticmethod
    def message(value) -> str:
        return f"Unknown time zone '{value}': use an IANA name such as 'Europe/Paris'."

    def __call__(self, value):
        if not bounds.is_time_zone(value):
            raise ValidationError(self.message(value))
        return value


def identifier(max_length: int = bounds.MAX_IDENTIFIER, **kwargs) -> fields.String:
    return fields.String(validate=Identifier(max_length), **kwargs)


def text(max_length: int, min_length: int = 0, **kwargs) -> fields.String:
    return fields.String(validate=Text(max_length, min_length), **kwargs)


class JsonObject(fields.Dict):
    """A free-form JSON object, bounded in depth, size, integer range and characters."""

    def __init__(self, *, max_bytes: int, **kwargs):
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        problem = bounds.json_problem(value, max_bytes=self.max_bytes) if value else None
        if problem:
            raise ValidationError(problem)
        return super()._deserialize(value, attr, data, **kwargs)


class Number(fields.Float):
    """A JSON number. marshmallow's Float also takes the string "0.5"; in a JSON body a string
    is a wrong type (422), as in every other field."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str | bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class Moment(fields.AwareDateTime):
    """An ISO 8601 date and time within bounds.EARLIEST and LATEST, answered in UTC."""

    def __init__(self, **kwargs):
        metadata = dict(kwargs.pop("metadata", {}))
        said = metadata.get("description")
        metadata["description"] = (f"{said} " if said else "") + f"{bounds.MOMENT_RULE}."
        super().__init__(format="iso", metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return bounds.parse_moment(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None
