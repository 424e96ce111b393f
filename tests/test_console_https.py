"""The console and REST API through the real binary over HTTPS: the first start prints the
console's URL and the admin's password once, the login form opens a session, pages and
API answers carry the security headers, and an unauthenticated API call gets 401 JSON."""

import http.cookiejar
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from conftest import Gateway, wait_port


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def client():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the gateway's self-signed certificate
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx),
        urllib.request.HTTPCookieProcessor(jar),
        NoRedirect,
    )


def fetch(opener, url, data=None):
    try:
        r = opener.open(url, data=data, timeout=10)
        return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_console_over_https(tmp_path):
    g = Gateway(tmp_path / "gw")
    g.start()
    try:
        wait_port(g.https, proc=g.proc)
        base = f"https://127.0.0.1:{g.https}"
        pattern = r"console: (https://\S+) — user admin, password (\S+) \(shown once\)"
        deadline = time.time() + 10
        while not (line := re.search(pattern, g.log.read_text())) and time.time() < deadline:
            time.sleep(0.1)
        assert line, g.log.read_text()[-2000:]
        assert line.group(1) == f"https://localhost:{g.https}/"
        password = line.group(2)

        web = client()
        status, headers, body = fetch(web, base + "/api/v1/messages")
        assert status == 401
        assert json.loads(body)["error"]["code"] == "unauthorized"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"

        status, headers, _ = fetch(web, base + "/messages")
        assert status == 303 and headers["Location"] == "/login"

        form = urllib.parse.urlencode({"username": "admin", "password": password}).encode()
        status, headers, _ = fetch(web, base + "/login", form)
        assert status == 303, status
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("__Host-portcullis-session=") and "HttpOnly" in cookie

        status, _, body = fetch(web, base + "/")
        assert status == 200 and '<svg class="chart"' in body
        status, _, body = fetch(web, base + "/api/v1/openapi.json")
        assert status == 200 and "/api/v1/quarantine" in json.loads(body)["paths"]
        # The password, the cookie and the session never reach the log.
        log = g.log.read_text()
        secret = cookie.split("=", 1)[1].split(";", 1)[0]
        assert secret not in log
        assert log.count(password) == 1
    finally:
        g.stop()
