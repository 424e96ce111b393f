"""The REST API against its own OpenAPI document, fuzzed by schemathesis (PyPI): every
operation, with generated valid and invalid input, as an administrator's bearer token. No
answer may be a server error (5xx) or break the document's response schemas.

The two operations that open connections to configured servers (a domain's route test and
the service checks) are left to their own tests: fuzzed routes could name any address, and
the tests only talk to loopback."""

import subprocess

from peers import Gateway, require


def test_no_operation_answers_5xx(tmp_path, sink):
    st = require("st")
    g = Gateway(tmp_path / "gw")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.cli("account", "add", "root", "--role", "admin", "--password-stdin",
          input="a schema test passphrase\n")
    out = g.cli("token", "create", "--account", "root", "--name", "schema", "--role", "admin").stdout
    secret = out.strip().splitlines()[-1]
    g.start()
    try:
        r = subprocess.run(
            [st, "run", f"https://127.0.0.1:{g.https}/api/v1/openapi.json",
             "--header", f"Authorization: Bearer {secret}", "--tls-verify", "false",
             "--checks", "not_a_server_error",
             "--exclude-path-regex", "^/api/v1/(services|domains/[^/]+/test)$",
             "--max-examples", "15", "--workers", "1", "--request-timeout", "10",
             "--generation-deterministic",
             "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        g.stop()
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
