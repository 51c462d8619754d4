"""The blueprint every resource uses: flask-smorest's, with request bodies parsed by orjson
(several times faster than the standard library on a 10,000-unit batch). Invalid JSON is the
same 400 as with the standard library."""

import flask_smorest
import orjson
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request


class OrjsonFlaskParser(FlaskParser):
    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            return self._handle_invalid_json_error(error, req)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = OrjsonFlaskParser()
