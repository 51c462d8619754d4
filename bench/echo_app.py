"""The baseline: a bare Flask JSON echo endpoint, served with the same gunicorn settings."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/echo")
def echo():
    return jsonify(request.get_json())
