"""A WSGI app for tests/http/test_sendfile.py: ``wsgi.file_wrapper`` over a
real file (SENDFILE_TEST_PATH), whose close() is logged to
WSGI_TEST_CLOSE_LOG (one line per close), so that a test can see it called.

    /file?seek=O&length=L   the file from O (the app seeks it), with a
                            Content-Length of L if given
    /bytesio                the same bytes from a BytesIO: iterated
    /small                  a short list body (ordering around the file)
"""

from __future__ import annotations

import io
import os


class LoggedFile(io.FileIO):
    """A real file (fileno, fstat) that says when it is closed."""

    def close(self) -> None:
        if not self.closed:
            with open(os.environ["WSGI_TEST_CLOSE_LOG"], "a") as log:
                log.write("closed\n")
        super().close()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = dict(part.split("=") for part in environ["QUERY_STRING"].split("&") if "=" in part)
    if path == "/small":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"small:" + query.get("tag", "").encode()]
    if path == "/file":
        handle = LoggedFile(os.environ["SENDFILE_TEST_PATH"], "rb")
        handle.seek(int(query.get("seek", 0)))
        headers = [("Content-Type", "application/octet-stream")]
        if "length" in query:
            headers.append(("Content-Length", query["length"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](handle)
    if path == "/bytesio":
        with open(os.environ["SENDFILE_TEST_PATH"], "rb") as f:
            data = f.read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(data))
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]
