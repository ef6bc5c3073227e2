"""A real Flask app, served with ``--app flask_app:app``: JSON routes, a form
POST, a streamed response and an error route."""

from __future__ import annotations

from flask import Flask, Response, abort, jsonify, request, send_file, stream_with_context

app = Flask(__name__)
ITEMS: dict[int, str] = {1: "one"}


@app.get("/")
def index():
    return "flask says hello"


@app.get("/items/<int:item_id>")
def get_item(item_id: int):
    if item_id not in ITEMS:
        abort(404)
    return jsonify(id=item_id, name=ITEMS[item_id])


@app.post("/json")
def post_json():
    data = request.get_json()
    return jsonify(received=data, doubled=[2 * x for x in data.get("numbers", [])]), 201


@app.post("/form")
def post_form():
    return f"hello {request.form['name']}, you are {int(request.form['age'])}"


@app.get("/stream")
def stream():
    count = int(request.args.get("count", 5))

    def generate():
        for i in range(count):
            yield f"line {i}\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/file")
def a_file():
    return send_file(__file__, mimetype="text/plain")  # wsgi.file_wrapper (sendfile on the blocking models)


@app.get("/error")
def error():
    raise ValueError("a Flask view that fails")
