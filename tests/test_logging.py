"""Logging and retention: log lines to a real syslog collector (a private rsyslogd) over
UDP, TCP and TLS as RFC 5424 with the message's fields as structured data; a collector
that is down costs dropped lines, never mail; the message log exported by time range as
CSV and JSON lines (command line and REST API, narrowed to what the caller sees); and
the retention job deleting what is older than its settings."""

import csv
import io
import json
import ssl
import time
import urllib.error
import urllib.request

import pytest

from peers import Gateway, free_port, send, wait_for, wait_port
from peers.pki import Pki
from peers.prometheus import value
from peers.rsyslog import Rsyslog

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SD_ID = "portcullis@32473"


def message(subject, body="Hello Bob,\r\nsee you at lunch.\r\n", to="bob@example.com"):
    return (f"From: alice@outside.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@outside.test>\r\n"
            "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n" + body).encode()


def logged(g, **filters):
    args = [x for k, v in filters.items() for x in (f"--{k}", v)]
    return json.loads(g.cli("log", "search", "--json", *args).stdout)


def gateway(tmp_path, sink, extra=""):
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"
                                 "[greylist]\nmode = \"never\"\n" + extra)
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    return g


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_log_lines_reach_rsyslog_as_rfc5424(tmp_path, sink, transport):
    pki = Pki(tmp_path / "pki")
    with Rsyslog(tmp_path / "rsyslog", pki=pki) as collector:
        port = {"udp": collector.udp, "tcp": collector.tcp, "tls": collector.tls}[transport]
        # TLS: the collector's certificate names localhost, and only the test CA is trusted.
        host = "localhost" if transport == "tls" else "127.0.0.1"
        keys = (f'syslog = "{transport}://{host}:{port}"\nsyslog_facility = "local3"\n'
                + (f'syslog_ca = "{pki.ca}"\n' if transport == "tls" else ""))
        g = gateway(tmp_path, sink)
        g.config.write_text(g.config.read_text().replace("[log]\n", "[log]\n" + keys, 1))
        g.start()
        try:
            assert send(g.smtp, "alice@outside.test", message=message("plain")) == {}
            assert send(g.smtp, "alice@outside.test", message=message("offer", f"{GTUBE}\r\n")) == {}
            plain = wait_for(lambda: logged(g, subject="plain"), what="the plain message logged")[0]
            spam = wait_for(lambda: logged(g, subject="offer"), what="the spam logged")[0]
            # local3 (19) and informational (6): PRI 158; APP-NAME; the queue id as MSGID
            # and in the structured data with the client and, for the held one, the verdict.
            line = collector.wait_line(f" {plain['id']} ", "queued")
            pri, app, msgid, rest = line.split(" ", 3)
            assert (pri, app, msgid) == ("158", "portcullis", plain["id"]), line
            assert rest.startswith(f'[{SD_ID} id="{plain["id"]}" client="127.0.0.1'), line
            assert 'from="alice@outside.test"' in line and 'direction="inbound"' in line, line
            assert f"<158>1 " in line and " gw.test portcullis " in line, line
            held = collector.wait_line(f" {spam['id']} ", 'verdict="quarantine:spam"')
            assert held.startswith(f"158 portcullis {spam['id']} [{SD_ID} ") and "checked" in held, held
        finally:
            g.stop()
        # The gateway's last line still reaches the collector as it stops.
        collector.wait_line("158 portcullis - -\t", "shutting down", timeout=5)


def test_tls_to_a_collector_of_another_ca_sends_nothing(tmp_path, sink):
    with Rsyslog(tmp_path / "rsyslog", pki=Pki(tmp_path / "pki")) as collector:
        other = Pki(tmp_path / "other", subject="Another CA")
        g = gateway(tmp_path, sink)
        g.config.write_text(g.config.read_text().replace(
            "[log]\n", f'[log]\nsyslog = "tls://localhost:{collector.tls}"\nsyslog_ca = "{other.ca}"\n', 1))
        g.start()
        try:
            assert send(g.smtp, "alice@outside.test", message=message("untrusted")) == {}
            wait_for(lambda: sink.files(), what="delivery all the same")
            wait_for(lambda: "cannot reach localhost" in g.log_text(), what="the refusal said")
            assert "certificate" in g.log_text().lower()
            assert not any("portcullis" in l for l in collector.lines()), collector.lines()
        finally:
            g.stop()


def test_a_collector_that_is_down_costs_lines_not_mail(tmp_path, sink):
    port = free_port()
    g = gateway(tmp_path, sink)
    g.config.write_text(g.config.read_text().replace(
        "[log]\n", f'[log]\nsyslog = "tcp://127.0.0.1:{port}"\n', 1))
    g.start()
    collector = None
    try:
        # Nothing listens: mail is taken and delivered all the same, at once.
        started = time.monotonic()
        assert send(g.smtp, "alice@outside.test", message=message("while down")) == {}
        assert time.monotonic() - started < 5
        wait_for(lambda: sink.files(), what="delivery while the collector is down")
        # The collector comes up on that port: the gateway reconnects (backoff of at most
        # a few seconds this early) and says how many lines it dropped meanwhile.
        collector = Rsyslog(tmp_path / "rsyslog", tcp=port).start()
        deadline = time.monotonic() + 40
        n = 0
        while time.monotonic() < deadline:
            n += 1
            send(g.smtp, "alice@outside.test", message=message(f"after {n}"))
            if any("queued" in l for l in collector.lines()):
                break
            time.sleep(1)
        dropped = collector.wait_line("dropped_total=")
        assert "log lines were dropped" in dropped and dropped.startswith("20 portcullis - "), dropped
        # The same count, for monitoring (taken every few seconds).
        def dropped_metric():
            body = urllib.request.urlopen(f"http://127.0.0.1:{g.metrics}/metrics", timeout=10).read().decode()
            return value(body, "portcullis_syslog_dropped_lines_total")
        wait_for(lambda: dropped_metric() > 0, 15, "portcullis_syslog_dropped_lines_total above 0")
        collector.wait_line("queued", 'id="')
        assert "cannot reach 127.0.0.1" in g.log_text()
    finally:
        g.stop()
        if collector:
            collector.stop()


def test_bad_syslog_settings_are_config_errors(tmp_path):
    g = Gateway(tmp_path / "gw")
    text = g.config.read_text()
    for bad, key in [('syslog = "tcp://127.0.0.1"', "syslog"),
                     ('syslog = "smtp://127.0.0.1:25"', "syslog"),
                     ('syslog_facility = "mailx"', "syslog_facility"),
                     ('syslog_ca = "/no/such/ca.pem"', "syslog_ca")]:
        g.config.write_text(text.replace("[log]\n", f"[log]\n{bad}\n", 1))
        r = g.cli("check-config", check=False)
        assert r.returncode == 2 and f"key `{key}`" in r.stderr and "portcullis.toml:" in r.stderr, r.stderr


def api(g, path, token, method="GET"):
    ctx = ssl.create_default_context(cafile=str(g.dir / "data" / "tls" / "selfsigned.crt"))
    req = urllib.request.Request(f"https://localhost:{g.https}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def token(g, account, role, *extra):
    g.cli("account", "add", account, "--role", role, *extra, "--password-stdin",
          input="a long enough passphrase\n")
    out = g.cli("token", "create", "--account", account, "--name", account.split("@")[0],
                "--role", role, *extra).stdout
    return out.strip().splitlines()[-1]


def test_message_log_export(tmp_path, sink):
    g = gateway(tmp_path, sink)
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
    admin = token(g, "root", "admin")
    dora = token(g, "dora", "domain-admin", "--domain", "example.net")
    user = token(g, "bob@example.com", "user")
    g.start()
    try:
        wait_port(g.https, proc=g.proc)
        for n in range(3):
            assert send(g.smtp, "alice@outside.test", ["bob@example.com", "carol@example.com"],
                        message=message(f"export {n}, \"quoted\"")) == {}
        assert send(g.smtp, "alice@outside.test", ["dan@example.net"],
                    message=message("=HYPERLINK(\"x\")", to="dan@example.net")) == {}
        wait_for(lambda: len(logged(g)) == 4, what="four messages logged")

        out = tmp_path / "log.csv"
        r = g.cli("log", "export", "--from", "1h", "--format", "csv", "--out", str(out))
        assert "bytes to" in r.stderr
        rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
        # One row per recipient, oldest first, the header naming the columns.
        assert len(rows) == 7, rows
        assert [r["recipient"] for r in rows[:2]] == ["bob@example.com", "carol@example.com"]
        assert rows[0]["subject"] == 'export 0, "quoted"' and rows[0]["direction"] == "inbound"
        assert rows[0]["received_at"].endswith("Z") and rows[0]["client_ip"] == "127.0.0.1"
        # A subject a spreadsheet would run as a formula is defused.
        assert rows[-1]["subject"] == "'=HYPERLINK(\"x\")"

        lines = g.cli("log", "export", "--format", "jsonl").stdout.splitlines()
        records = [json.loads(l) for l in lines]
        assert len(records) == 4 and records[0]["subject"] == 'export 0, "quoted"'
        assert [r["address"] for r in records[0]["recipients"]] == ["bob@example.com", "carol@example.com"]
        # The range: nothing before an hour ago, nothing from tomorrow on.
        assert g.cli("log", "export", "--to", "1h").stdout == ""
        assert g.cli("log", "export", "--from", "2000-01-01", "--to", "2000-01-02T00:00:00Z").stdout == ""
        bad = g.cli("log", "export", "--from", "yesterday", check=False)
        assert bad.returncode != 0 and "yesterday" in bad.stderr
        bad = g.cli("log", "export", "--format", "xml", check=False)
        assert bad.returncode != 0 and "csv or jsonl" in bad.stderr

        # The REST API streams the same; a domain admin gets the mail of their domains.
        status, ctype, body = api(g, "/api/v1/log/export?format=csv&from=1h", admin)
        assert status == 200 and ctype.startswith("text/csv"), (status, body)
        assert body == out.read_bytes().decode()
        status, ctype, body = api(g, "/api/v1/log/export", dora)
        assert status == 200 and ctype == "application/x-ndjson", (status, body)
        assert [json.loads(l)["recipients"][0]["address"] for l in body.splitlines()] == ["dan@example.net"]
        status, _, body = api(g, "/api/v1/log/export", user)
        assert status == 403 and "may not export" in body, (status, body)
        status, _, body = api(g, "/api/v1/log/export?format=xml", admin)
        assert status == 400 and "format" in body, (status, body)
        # And the command line through the API (--url) writes what it writes locally.
        import os
        import subprocess
        from peers import BIN
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
        env["PORTCULLIS_TOKEN"] = admin
        r = subprocess.run([str(BIN), "--url", f"https://localhost:{g.https}", "--ca-file",
                            str(g.dir / "data" / "tls" / "selfsigned.crt"), "log", "export",
                            "--from", "1h", "--format", "csv"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout == out.read_text(), r.stderr
    finally:
        g.stop()


DAY = 86400


def age(g, now, tag, ids, age_days):
    """Makes the message of `tag` (logged by the gateway) `age_days` old, and gives it a
    report, an audit row and a held copy of that age."""
    at = now - age_days * DAY
    g.sql(f"UPDATE messages SET received_at = {at} WHERE id = '{ids[tag]}'")
    g.sql(f"INSERT INTO reports (id, kind, org, report_id, domain, date_begin, date_end, received_at, "
          f"messages, pass, fail, report) VALUES ('{tag}', 'dmarc', 'org', '{tag}', 'example.com', "
          f"{at}, {at}, {at}, 1, 1, 0, '{{}}')")
    g.sql(f"INSERT INTO audit_log (id, at, actor, role, via, action, target) "
          f"VALUES ({abs(hash(tag)) % 10**9}, {at}, 'x', 'admin', 'cli', 'test.{tag}', 't')")
    g.sql(f"INSERT INTO quarantine_messages (id, direction, received_at, expires_at, sender, class, "
          f"score, findings, envelope, body) VALUES ('{tag}', 'inbound', {at}, {now + 30 * DAY}, "
          f"'a@outside.test', 'spam', 9, '[]', '{{}}', 'x')")


def counts(g, tag, ids):
    return [g.sql(f"SELECT COUNT(*) FROM {t} WHERE {c} = '{v}'")[0][0]
            for t, c, v in [("messages", "id", ids[tag]), ("message_recipients", "message", ids[tag]),
                            ("reports", "id", tag), ("audit_log", "action", f"test.{tag}"),
                            ("quarantine_messages", "id", tag)]]


def test_retention_deletes_what_is_older_than_its_settings(tmp_path, sink):
    g = gateway(tmp_path, sink, "[retention]\nlog_days = 30\nquarantine_days = 10\n"
                                "reports_days = 60\naudit_days = 100\nbatch = 2\ninterval_secs = 600\n")
    # The message log is the gateway's to write (its search index with it): real mail,
    # made old afterwards.
    g.start()
    tags = ["young", "middle", "old", "later"]
    try:
        for tag in tags:
            assert send(g.smtp, "alice@outside.test", message=message(tag)) == {}
        wait_for(lambda: len(logged(g)) == 4, what="four messages logged")
    finally:
        g.stop()
    ids = {m["subject"]: m["id"] for m in logged(g)}
    now = int(time.time())
    for tag, days in [("young", 5), ("middle", 40), ("old", 400), ("later", 1)]:
        age(g, now, tag, ids, days)
    out = g.cli("retention", "run").stdout
    # middle: log (30) and quarantine (10) gone, its report (60) and audit row (100) kept.
    assert out.strip() == ("deleted 2 messages of the log, 2 held messages, 1 reports, "
                           "1 audit rows"), out
    assert counts(g, "young", ids) == [1, 1, 1, 1, 1]
    assert counts(g, "middle", ids) == [0, 0, 1, 1, 0]
    assert counts(g, "old", ids) == [0, 0, 0, 0, 0]
    assert [m["subject"] for m in logged(g)] == ["later", "young"]
    audit = json.loads(g.cli("audit", "list", "--action", "retention.", "--json").stdout)
    assert [a["action"] for a in audit] == ["retention.run"], audit

    # The gateway's own job, every second here.
    g.config.write_text(g.config.read_text().replace("interval_secs = 600", "interval_secs = 1"))
    g.start()
    try:
        g.sql(f"UPDATE messages SET received_at = {now - 45 * DAY} WHERE id = '{ids['later']}'")
        wait_for(lambda: counts(g, "later", ids)[0] == 0, timeout=20, what="the job's purge")
        assert counts(g, "young", ids)[0] == 1
        wait_for(lambda: "retention run: deleted 1 messages of the log" in g.log_text(),
                 what="the run logged with its counts")
        # Through the REST API (and so `portcullis --url ... retention run`): admins only.
        wait_port(g.https, proc=g.proc)
        admin = token(g, "root", "admin")
        auditor = token(g, "audrey", "auditor")
        status, _, body = api(g, "/api/v1/retention/run", admin, method="POST")
        assert status == 200 and json.loads(body) == {"log": 0, "quarantine": 0, "reports": 0,
                                                      "audit": 0}, body
        status, _, body = api(g, "/api/v1/retention/run", auditor, method="POST")
        assert status == 403, (status, body)
    finally:
        g.stop()


def test_quarantine_days_and_expiry_days_may_not_disagree(tmp_path):
    g = Gateway(tmp_path / "gw", "[quarantine]\nexpiry_days = 10\n[retention]\nquarantine_days = 7\n")
    r = g.cli("check-config", check=False)
    assert r.returncode == 2 and "key `quarantine_days`" in r.stderr and "expiry_days" in r.stderr, r.stderr
