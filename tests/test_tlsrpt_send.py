"""Outgoing TLS-RPT reports (RFC 8460) end to end. A DNS server on loopback publishes
secure.test with an MTA-STS `enforce` policy (`mx: *.secure.test`) and two MX hosts, both
second Portcullis instances on the same port: mx1.secure.test (127.0.0.2) with a
self-signed certificate, so that every delivery first fails there, and mx2.secure.test
(127.0.0.1) with a certificate from the test CA, which takes the mail. secure.test
publishes `_smtp._tls` with a `mailto:` address (delivered by MX to reports.test, whose MX
is mx2 again) or an `https:` address served by a small HTTPS server of the test.

The sending gateway keeps its TLS session counts in memory and stores them every minute
and at shutdown; the tests stop it to have the counts stored, then run `portcullis report
send-tlsrpt --day <today>` and read the report where it arrives."""

import datetime
import gzip
import json
import time

from peers import Gateway, Sink, dns_server, free_port, send, wait_for
from peers.dns import SignedDns, signed_zone
from peers.gateway import Mx
from peers.https import PolicyServer, ReportServer, policy_text
from peers.pki import spki_sha256


def zone(rua):
    return f"""
secure.test.            60 IN MX  10 mx1.secure.test.
secure.test.            60 IN MX  20 mx2.secure.test.
mx1.secure.test.        60 IN A   127.0.0.2
mx2.secure.test.        60 IN A   127.0.0.1
mta-sts.secure.test.    60 IN A   127.0.0.1
_mta-sts.secure.test.   60 IN TXT "v=STSv1; id=20261101T000000;"
_smtp._tls.secure.test. 60 IN TXT "v=TLSRPTv1; rua={rua}"
reports.test.           60 IN MX  10 mx.reports.test.
mx.reports.test.        60 IN A   127.0.0.1
tlsrpt.reports.test.    60 IN A   127.0.0.1
"""


class Setup:
    """The DNS zone, the policy server, both MX hosts and the sending gateway."""

    def __init__(self, tmp_path, pki, dns_port):
        self.policy = PolicyServer(*pki.issue("mta-sts.secure.test"),
                                   policy_text("enforce", mx="*.secure.test"))
        self.sink = Sink(tmp_path / "sink").start()
        port = free_port()
        self.good = Mx(tmp_path / "mx2", *pki.issue("mx2.secure.test"), port=port,
                       domains=("secure.test", "reports.test"), sink=self.sink)
        self.bad = Mx(tmp_path / "mx1", *pki.self_signed("mx1.secure.test"), port=port,
                      ip="127.0.0.2", domains=())
        # No pooled connections: every message opens (and counts) its own sessions.
        self.gw = Gateway(tmp_path / "gw",
                          f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\ntimeout_secs = 2\n'
                          f"[delivery]\nmx_port = {port}\nmta_sts_port = {self.policy.port}\n"
                          f'extra_ca_file = "{pki.ca}"\nmin_backoff_secs = 1\n'
                          "max_backoff_secs = 2\nconnection_idle_secs = 0\n")
        self.gw.cli("network", "add", "127.0.0.0/8", "--comment", "test clients")
        self.gw.start()

    def deliver(self, n):
        """n messages to secure.test: each fails at mx1 (certificate), then goes to mx2."""
        for i in range(n):
            send(self.gw.smtp, "me@example.net", ["friend@secure.test"], f"message {i}")
            self.sink.wait_count(i + 1)
        wait_for(lambda: self.gw.queue_ids() == [], what="queue empty")
        log = self.gw.log_text()
        assert "MTA-STS enforce: TLS or certificate failed" in log, log

    def stop(self):
        for stop in (self.gw.stop, self.good.stop, self.bad.stop, self.sink.stop,
                     self.policy.stop):
            try:
                stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                pass


def today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def send_tlsrpt(g, day):
    """The lines printed (one per report sent) and the notes on standard error."""
    r = g.cli("report", "send-tlsrpt", "--day", day)
    return r.stdout, r.stderr


def check_report(report, day, n):
    assert report["organization-name"] == "gw.test"
    assert report["contact-info"] == "postmaster@gw.test"
    assert report["report-id"]
    assert report["date-range"] == {"start-datetime": f"{day}T00:00:00Z",
                                    "end-datetime": f"{day}T23:59:59Z"}
    (policy,) = report["policies"]
    p = policy["policy"]
    assert p["policy-type"] == "sts"
    assert p["policy-domain"] == "secure.test"
    assert "mode: enforce" in p["policy-string"] and "mx: *.secure.test" in p["policy-string"]
    assert p["mx-host"] == ["*.secure.test"]
    assert policy["summary"] == {"total-successful-session-count": n,
                                 "total-failure-session-count": n}
    (detail,) = policy["failure-details"]
    assert detail["result-type"] == "certificate-not-trusted"
    assert detail["receiving-mx-hostname"] == "mx1.secure.test"
    assert detail["receiving-ip"] == "127.0.0.2"
    assert detail["failed-session-count"] == n


def report_messages(sink):
    return [m for m in sink.messages() if m["TLS-Report-Domain"]]


def test_mailto_report_is_queued_and_delivered(tmp_path, pki):
    with dns_server(zone("mailto:tlsrpt@reports.test")) as dns:
        s = Setup(tmp_path, pki, dns)
        try:
            s.deliver(2)
            # Stopping the gateway stores the counts it holds.
            s.gw.stop()
            # The From domain of reports has a DKIM key: the report is signed with it.
            s.gw.cli("dkim", "generate", "gw.test", "--selector", "rep")
            day = today()
            out, _ = send_tlsrpt(s.gw, day)
            assert out.startswith(f"sent secure.test {day} report") and out.count("\n") == 1, out
            assert "successful=2 failed=2" in out and "mailto:tlsrpt@reports.test queued as" in out
            # The report waits in the spool; the gateway delivers it when it runs again.
            s.gw.start()
            s.sink.wait_count(3)
            (msg,) = report_messages(s.sink)
            assert msg["TLS-Report-Domain"] == "secure.test"
            assert msg["TLS-Report-Submitter"] == "gw.test"
            assert msg["To"].strip("<>") == "tlsrpt@reports.test"
            assert msg["From"].strip("<>") == "noreply-reports@gw.test"
            assert "d=gw.test" in msg["DKIM-Signature"] and "s=rep" in msg["DKIM-Signature"]
            assert msg.get_content_type() == "multipart/report"
            assert msg.get_param("report-type") == "tlsrpt"
            (part,) = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
            assert part.get_filename().startswith("gw.test!secure.test!")
            report = json.loads(gzip.decompress(part.get_payload(decode=True)))
            check_report(report, day, 2)
            assert "TLS-RPT report sent" not in s.gw.log_text()  # the CLI sent it, not serve

            # The day is reported: a second run sends nothing.
            # (The report's own delivery to reports.test is counted too; when the gateway
            # has stored that count already, reports.test is skipped: it has no record.)
            out, err = send_tlsrpt(s.gw, day)
            assert out == "", (out, err)
            time.sleep(2)
            assert len(report_messages(s.sink)) == 1
        finally:
            s.stop()


def test_https_report_is_posted(tmp_path, pki):
    server = ReportServer(*pki.issue("tlsrpt.reports.test"))
    rua = f"https://tlsrpt.reports.test:{server.port}/v1/tlsrpt"
    try:
        with dns_server(zone(rua)) as dns:
            s = Setup(tmp_path, pki, dns)
            try:
                s.deliver(3)
                s.gw.stop()
                s.gw.start()  # the report goes out while the gateway runs
                day = today()
                out, _ = send_tlsrpt(s.gw, day)
                assert out.startswith(f"sent secure.test {day} report"), out
                assert "successful=3 failed=3" in out and f"{rua} HTTP 200" in out, out
                (path, content_type, body) = server.posts[0]
                assert len(server.posts) == 1
                assert path == "/v1/tlsrpt"
                assert content_type == "application/tlsrpt+gzip"
                check_report(json.loads(gzip.decompress(body)), day, 3)

                out, err = send_tlsrpt(s.gw, day)
                assert out == "" and f"no TLS results to report for {day}" in err, (out, err)
                assert len(server.posts) == 1
                # No report mail either.
                assert report_messages(s.sink) == []
            finally:
                s.stop()
    finally:
        server.stop()


def test_dane_report_names_the_tlsa_base_domain(tmp_path, pki):
    """RFC 8460 §3: the policy domain of a DANE policy is the TLSA base domain. The MX of
    secure.test is alias.secure.test, a CNAME of mx.secure.test, whose TLSA record
    authenticates it (RFC 7672 §2.2.2, a signed zone as in test_dane). The report is
    about secure.test and goes to secure.test's `_smtp._tls` address; its policy is the
    TLSA record with policy-domain mx.secure.test."""
    server = ReportServer(*pki.issue("tlsrpt.secure.test"))
    cert, key = pki.self_signed("mx.secure.test")
    mx = Mx(tmp_path, cert, key)
    digest = spki_sha256(cert)
    rua = f"https://tlsrpt.secure.test:{server.port}/v1/tlsrpt"
    text, anchor = signed_zone(tmp_path / "zone", mx.port, digest, alias=True,
                               extra=f'_smtp._tls IN TXT "v=TLSRPTv1; rua={rua}"\n'
                                     "tlsrpt IN A 127.0.0.1\n")
    dns = SignedDns(text)
    # No pooled connections: each message opens (and counts) its own session.
    g = Gateway(tmp_path / "gw",
                f'[dns]\nnameservers = ["127.0.0.1:{dns.port}"]\ntimeout_secs = 2\n'
                f"[delivery]\nmx_port = {mx.port}\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"
                f'dnssec_trust_anchor = "{anchor}"\nextra_ca_file = "{pki.ca}"\n'
                "connection_idle_secs = 0\n")
    g.cli("network", "add", "127.0.0.0/8", "--comment", "test clients")
    g.start()
    try:
        for i in range(2):
            send(g.smtp, "me@example.net", ["friend@secure.test"], f"DANE {i}")
            mx.sink.wait_count(i + 1)
        assert "DANE: certificate authenticated by TLSA" in g.log_text()
        wait_for(lambda: g.queue_ids() == [], what="queue empty")
        g.stop()
        day = today()
        out, err = send_tlsrpt(g, day)
        assert out.startswith(f"sent secure.test {day} report"), (out, err)
        assert "successful=2 failed=0" in out and f"{rua} HTTP 200" in out, out
        ((path, content_type, body),) = server.posts
        assert path == "/v1/tlsrpt" and content_type == "application/tlsrpt+gzip"
        report = json.loads(gzip.decompress(body))
        (policy,) = report["policies"]
        p = policy["policy"]
        assert p["policy-type"] == "tlsa"
        assert p["policy-domain"] == "mx.secure.test", p
        assert p["policy-string"] == [f"3 1 1 {digest}"], p
        assert p["mx-host"] == ["alias.secure.test"], p
        assert policy["summary"] == {"total-successful-session-count": 2,
                                     "total-failure-session-count": 0}
        assert "failure-details" not in policy or policy["failure-details"] == []
    finally:
        g.stop()
        dns.stop()
        mx.stop()
        server.stop()


def test_day_without_results_sends_nothing(tmp_path):
    g = Gateway(tmp_path / "gw")
    r = g.cli("report", "send-tlsrpt", "--day", "2026-01-02")
    assert r.stdout == "" and "no TLS results to report for 2026-01-02" in r.stderr
    r = g.cli("report", "send-tlsrpt", "--day", "2026-13-01", check=False)
    assert r.returncode != 0 and "YYYY-MM-DD" in r.stderr
