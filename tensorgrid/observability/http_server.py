"""The small HTTP(S) server behind --metrics-port and --dashboard-port, checking the cluster's token.

A cluster started with a token (--token-file, TENSORGRID_TOKEN) wants it on
every HTTP request too, presented one of two ways:

- `Authorization: Bearer <token>`: what Prometheus sends with
  `authorization: {type: Bearer, credentials_file: /path/to/token}` in its
  scrape config, and `curl -H "Authorization: Bearer $(cat token)"`;
- a browser opens `/?token=<token>` once (the URL `tensorgrid local` and
  `demo` print): the answer sets a cookie holding an HMAC of the token (never
  the token itself; HttpOnly, SameSite=Strict, Secure under TLS) and
  redirects to the page without `?token=`, so the token leaves the address
  bar; the page's fetches and its event stream carry the cookie.

Anything else gets 401 with a line saying how to present the token. With
--tls-cert/--tls-key the server speaks HTTPS with the same certificate as the
gRPC services (no client certificate asked: the token is the credential).
"""

import dataclasses
import hashlib
import hmac
import http.server
import logging
import socket
import ssl
import threading
import urllib.parse

log = logging.getLogger("tensorgrid.http")

COOKIE = "tensorgrid_session"


@dataclasses.dataclass
class Response:
    """What a route answers: a body, or `stream` (an iterator of bytes chunks written as they come)."""

    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    status: int = 200
    stream: object = None
    headers: dict = dataclasses.field(default_factory=dict)


def text(body, status=200, content_type="text/plain; charset=utf-8"):
    return Response(body.encode("utf-8"), content_type, status)


def _cookie_value(token):
    return hmac.new(token.encode("utf-8"), b"tensorgrid dashboard session", hashlib.sha256).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tensorgrid"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self):
        owner = self.server.owner
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        route = owner.routes.get(url.path)
        if owner.token is not None:
            given = query.pop("token", None)
            if given is not None and hmac.compare_digest(given.encode("utf-8"), owner.token.encode("utf-8")):
                return self._login(url, query)
            if not self._authorized(owner):
                return self._send(text(
                    f"{url.path}: this cluster requires its token: send 'Authorization: Bearer <token>' "
                    "(Prometheus: authorization.credentials_file), or open /?token=<token> in a browser\n", 401),
                    {"WWW-Authenticate": 'Bearer realm="tensorgrid"'})
        if route is None:
            return self._send(text(f"{url.path}: not found (this server has {', '.join(sorted(owner.routes))})\n",
                                   404))
        try:
            response = route(query)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the server
            log.exception("GET %s failed", url.path)
            response = text(f"{url.path}: {type(e).__name__}: {e}\n", 500)
        self._send(response)

    def _authorized(self, owner):
        auth = self.headers.get("Authorization", "")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode("utf-8"),
                                                              owner.token.encode("utf-8")):
            return True
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode("ascii", "replace"), owner.cookie.encode("ascii")):
                return True
        return False

    def _login(self, url, query):
        secure = "; Secure" if self.server.owner.tls else ""
        location = url.path + ("?" + urllib.parse.urlencode(query) if query else "")
        self._send(Response(b"", status=303), {
            "Location": location,
            "Set-Cookie": f"{COOKIE}={self.server.owner.cookie}; Path=/; HttpOnly; SameSite=Strict{secure}"})

    def _send(self, response, headers=None):
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in {**response.headers, **(headers or {})}.items():
                self.send_header(k, v)
            if response.stream is None:
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
                return
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for chunk in response.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        finally:
            close = getattr(response.stream, "close", None)
            if close is not None:
                close()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HttpServer:
    """GET routes {path: fn(query dict) -> Response} on host:port (0: any free port), token-checked."""

    def __init__(self, host, port, routes, token=None, tls=None, name="http"):
        self.routes = dict(routes)
        self.token = token
        self.cookie = _cookie_value(token) if token else ""
        self.tls = tls if tls is not None and tls.cert and tls.key else None
        self.name = name
        _Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._httpd = _Server((host.strip("[]"), port), _Handler)
        except OSError as e:
            raise OSError(f"--{name}-port: cannot listen on {host}:{port}: {e.strerror or e}") from None
        self._httpd.owner = self
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"tg-{name}-http", daemon=True)

    def url(self, path="/"):
        scheme = "https" if self.tls is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
