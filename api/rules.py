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


Slug = FullMatch(bounds.SLUG_PATTERN, error=bounds.SLUG_RULE)
VariantKey = FullMatch(bounds.VARIANT_KEY_PATTERN, error=bounds.VARIANT_KEY_RULE)


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

    def __call__(self, value):
        if not bounds.is_time_zone(value):
            raise ValidationError(bounds.time_zone_problem(value))
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


class Batch(fields.List):
    """The list of a batch request (units, events): 1 to bounds.MAX_BATCH items, each read by
    `parse`, a plain function returning (the item as the service takes it, its problems by
    field). A nested schema per item would cost more than the work the batch asks for; the
    OpenAPI document still describes each item by `item_schema`."""

    def __init__(self, item_schema, *, noun: str, parse, **kwargs):
        metadata = {"minItems": 1, "maxItems": bounds.MAX_BATCH, **kwargs.pop("metadata", {})}
        super().__init__(fields.Nested(item_schema), metadata=metadata, **kwargs)
        self.noun = noun
        self.parse = parse

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError(f"Must be a list of {self.noun}.")
        if not 1 <= len(value) <= bounds.MAX_BATCH:
            raise ValidationError(f"Give between 1 and {bounds.MAX_BATCH:,} {self.noun}.")
        parse = self.parse
        items, errors = [], {}
        for index, item in enumerate(value):
            parsed, problems = parse(item)
            if problems:
                errors[index] = problems
            items.append(parsed)
        if errors:
            raise ValidationError(errors)
        return items


def document_schema_keywords(converter) -> None:
    """Let a schema add JSON Schema keywords that no field can say (`anyOf` over required
    fields) through `class Meta: json_schema = {...}`."""
    to_json_schema = converter.schema2jsonschema

    def schema2jsonschema(schema):
        document = to_json_schema(schema)
        meta = getattr(schema, "Meta", None)
        document.update(getattr(meta, "json_schema", {}))
        return document

    converter.schema2jsonschema = schema2jsonschema
