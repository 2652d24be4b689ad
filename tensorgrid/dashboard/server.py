"""The dashboard's HTTP routes over a view (live.LiveView or history.RecordedView).

    /                      the page (static/index.html, with dashboard.js and dashboard.css)
    /api/snapshot          the snapshot, JSON
    /api/events            server-sent events: one `data:` line per new snapshot, comments as keep-alives
    /api/graph.svg?sig=ID  the partition picture of a step signature's latest plan
    /api/trace?sig=ID      the latest traced step of a signature, one lane per device
"""

import json
import os

from tensorgrid.observability.http_server import Response, text

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
KEEPALIVE_S = 15.0


def _static(name):
    path = os.path.join(STATIC, name)
    content_type = _TYPES[os.path.splitext(name)[1]]

    def serve(query):
        with open(path, "rb") as f:
            return Response(f.read(), content_type)
    return serve


def _json(value):
    return Response(json.dumps(value).encode("utf-8"), "application/json")


def _events(view):
    """The snapshot stream: each new one as an event, until the view closes."""
    yield b"retry: 2000\n\n"
    version, snapshot = view.wait(0, 0)
    yield b"data: " + json.dumps(snapshot).encode("utf-8") + b"\n\n"
    if not view.live:
        return
    while not view.closed:
        newer, snapshot = view.wait(version, KEEPALIVE_S)
        if newer == version:
            yield b": keep-alive\n\n"
            continue
        version = newer
        yield b"data: " + json.dumps(snapshot).encode("utf-8") + b"\n\n"


def routes(view):
    """{path: handler} of the dashboard over `view`."""
    def snapshot(query):
        return _json(view.snapshot())

    def events(query):
        return Response(content_type="text/event-stream", stream=_events(view))

    def graph(query):
        svg = view.graph_svg(query.get("sig", ""))
        if svg is None:
            return text(f"no step signature {query.get('sig', '')!r} (see /api/snapshot's signatures)\n", 404)
        return Response(svg.encode("utf-8"), "image/svg+xml")

    def trace(query):
        value = view.trace(query.get("sig", ""))
        if value is None:
            return text(f"no traced step of signature {query.get('sig', '')!r} yet\n", 404)
        return _json(value)

    out = {"/": _static("index.html"), "/api/snapshot": snapshot, "/api/events": events,
           "/api/graph.svg": graph, "/api/trace": trace}
    for name in ("dashboard.js", "dashboard.css"):
        out["/" + name] = _static(name)
    return out
