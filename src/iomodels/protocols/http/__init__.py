"""http: HTTP/1.1 (RFC 9110/9112) on the one protocol API, so every model is a web server.

- core.py: the sans-IO connection (httptools/llhttp parses; events out, bytes in)
- routes.py: the built-in routes and the request/response cycle a handler lives in
- protocol.py: the Protocol that joins them to a transport

httptools is an optional extra (``pip install 'iomodels[http]'``): importing
this package without it raises ImportError saying so; ``iomodels.protocols``
itself never imports it.  See docs/http.md.
"""

from iomodels.protocols.http.core import HttpConnection, Limits, RemoteError, Request
from iomodels.protocols.http.protocol import HttpProtocol, HttpSettings, make_factory

__all__ = [
    "HttpConnection",
    "HttpProtocol",
    "HttpSettings",
    "Limits",
    "RemoteError",
    "Request",
    "make_factory",
]
