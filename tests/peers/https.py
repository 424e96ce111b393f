"""HTTPS servers on a free loopback port with a certificate of the test PKI: an MTA-STS
policy host (any file served by GET) and a TLS-RPT report receiver (POST)."""

import http.server
import ssl
import threading


class HttpsServer:
    """HTTPS on a free loopback port; subclasses answer in `get` and `post` (by default,
    501 as http.server answers a method it does not know)."""

    def __init__(self, cert, key):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.get(self)

            def do_POST(self):  # noqa: N802 - http.server's name
                outer.post(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def get(self, request):
        request.send_error(501, f"Unsupported method ({request.command!r})")

    def post(self, request):
        request.send_error(501, f"Unsupported method ({request.command!r})")

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class PolicyServer(HttpsServer):
    """Serves `policy` as /.well-known/mta-sts.txt; counts the GET requests."""

    def __init__(self, cert, key, policy, content_type="text/plain"):
        self.policy = policy
        self.content_type = content_type
        self.requests = 0
        super().__init__(cert, key)

    def get(self, request):
        self.requests += 1
        if request.path != "/.well-known/mta-sts.txt":
            request.send_error(404)
            return
        body = self.policy.encode()
        request.send_response(200)
        request.send_header("Content-Type", self.content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def policy_text(mode, mx="mx.secure.test"):
    # CRLF and trailing blanks on purpose: the parser must be tolerant of both.
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}  \r\nmax_age: 86400\r\n"


class ReportServer(HttpsServer):
    """Takes POSTed reports: `posts` holds (path, content type, body) of each."""

    def __init__(self, cert, key):
        self.posts = []
        super().__init__(cert, key)

    def post(self, request):
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length)
        self.posts.append((request.path, request.headers.get("Content-Type"), body))
        request.send_response(200)
        request.send_header("Content-Length", "0")
        request.end_headers()
