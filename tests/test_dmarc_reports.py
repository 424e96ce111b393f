"""Outgoing DMARC aggregate reports (RFC 7489 §7.2) end to end: a DNS server run by the test
publishes SPF, a DKIM key and a DMARC policy with rua for sender.test; messages signed by
dkimpy pass, a spoof of the p=reject domain is refused with 550; `portcullis report
send-dmarc --day <today>` then queues the day's report, which the gateway delivers to the
rua (reports.test is routed to a sink of its own). The test unpacks the gzipped XML and
checks the policy domain, the day, and the records per source address and disposition; a
second run for the same day sends nothing. A domain without rua contributes nothing."""

import datetime
import email.header
import gzip
import time
import xml.etree.ElementTree as ET

import dkim
import pytest

from peers import Gateway, Sink, dns_server, send, wait_for

NS = {"d": "urn:ietf:params:xml:ns:dmarc-2.0"}


@pytest.fixture
def zone(dkim_key):
    _, public = dkim_key
    # reports.test is outside sender.test's organization: it must authorize the reports.
    # tiny@ takes at most 10 bytes; unauth.test never agreed to receive reports.
    text = f"""
sender.test.                              60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
sel._domainkey.sender.test.               60 IN TXT "v=DKIM1; k=rsa; p={public}"
_dmarc.sender.test.                       60 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@reports.test,mailto:tiny@reports.test!10,mailto:dmarc@unauth.test"
sender.test._report._dmarc.reports.test.  60 IN TXT "v=DMARC1"
norua.test.                               60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.norua.test.                        60 IN TXT "v=DMARC1; p=none"
"""
    with dns_server(text) as port:
        yield port


@pytest.fixture
def reports_sink(tmp_path):
    with Sink(tmp_path / "reports-sink") as s:
        yield s


@pytest.fixture
def gw(tmp_path, sink, reports_sink, zone):
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{zone}\"]\ntimeout_secs = 1\n"
                                 "[auth]\nenabled = true\n"
                                 # Sent by the test with send-dmarc; the daily run (after
                                 # 23:00) finds nothing of yesterday's to send.
                                 "[reports]\ndmarc_aggregate = true\nsend_hour_utc = 23\n"
                                 "org_name = \"Gateway Test Org\"\n"
                                 "from = \"dmarc-reports@gw.test\"\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.cli("domain", "add", "reports.test", "--route", f"127.0.0.1:{reports_sink.port}")
    g.start()
    yield g
    g.stop()


def message(sender, subject):
    return (f"From: {sender}\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nhello\r\n").encode()


def signed(sender, subject, key):
    msg = message(sender, subject)
    return dkim.sign(msg, b"sel", b"sender.test", key, include_headers=[b"from", b"to", b"subject"]) + msg


def collected(g):
    """Rows kept for the reports, per policy domain."""
    return dict(g.sql("SELECT domain, COUNT(*) FROM dmarc_results GROUP BY domain"))


def today():
    now = datetime.datetime.now(datetime.timezone.utc)
    midnight = datetime.datetime(now.year, now.month, now.day, tzinfo=datetime.timezone.utc)
    return now.strftime("%Y-%m-%d"), int(midnight.timestamp())


def test_daily_report_is_built_and_delivered_to_rua(gw, sink, reports_sink, dkim_key):
    key = dkim_key[0]
    for i in range(2):
        code, text = send(gw.smtp, "alice@sender.test",
                          message=signed("alice@sender.test", f"signed {i}", key),
                          helo="mail.sender.test", check=False)
        assert code == 250, (code, text)
    # A spoof from another address: SPF and DKIM fail, p=reject refuses it at DATA.
    code, text = send(gw.smtp, "ceo@sender.test", message=message("ceo@sender.test", "pay this"),
                      helo="attacker.test", source="127.0.0.2", check=False)
    assert code == 550 and b"DMARC" in text, (code, text)
    sink.wait_count(2)
    wait_for(lambda: collected(gw).get("sender.test") == 3, what="3 DMARC results stored")

    # The report's From domain has a DKIM key: the report is signed with it.
    gw.cli("dkim", "generate", "gw.test", "--selector", "rep")
    day, begin = today()
    out = gw.cli("report", "send-dmarc", "--day", day).stdout
    lines = out.splitlines()
    # One report: tiny@ is too small for it, unauth.test did not authorize it.
    assert len(lines) == 1 and "sender.test" in lines[0] and "to dmarc@reports.test" in lines[0], out
    assert "records=2 messages=3" in lines[0], out

    (msg,) = reports_sink.wait_count(1) and reports_sink.messages()
    assert "dmarc@reports.test" in msg["To"], msg["To"]
    assert "dmarc-reports@gw.test" in msg["From"]
    assert "d=gw.test" in msg["DKIM-Signature"] and "s=rep" in msg["DKIM-Signature"]
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    assert subject.startswith("Report Domain: sender.test Submitter: gw.test Report-ID:"), subject
    parts = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
    assert len(parts) == 1, [p.get_content_type() for p in msg.walk()]
    assert parts[0].get_filename().endswith(f"!sender.test!{begin}!{begin + 86399}.xml.gz")
    root = ET.fromstring(gzip.decompress(parts[0].get_payload(decode=True)))

    assert root.findtext("d:report_metadata/d:org_name", namespaces=NS) == "Gateway Test Org"
    assert root.findtext("d:report_metadata/d:email", namespaces=NS) == "dmarc-reports@gw.test"
    assert root.findtext("d:report_metadata/d:report_id", namespaces=NS)
    assert int(root.findtext("d:report_metadata/d:date_range/d:begin", namespaces=NS)) == begin
    assert int(root.findtext("d:report_metadata/d:date_range/d:end", namespaces=NS)) == begin + 86399
    assert root.findtext("d:policy_published/d:domain", namespaces=NS) == "sender.test"
    assert root.findtext("d:policy_published/d:p", namespaces=NS) == "reject"

    rows = {}
    for rec in root.findall("d:record", NS):
        ip = rec.findtext("d:row/d:source_ip", namespaces=NS)
        disposition = rec.findtext("d:row/d:policy_evaluated/d:disposition", namespaces=NS)
        rows[(ip, disposition)] = (
            int(rec.findtext("d:row/d:count", namespaces=NS)),
            rec.findtext("d:row/d:policy_evaluated/d:dkim", namespaces=NS),
            rec.findtext("d:row/d:policy_evaluated/d:spf", namespaces=NS),
            rec.findtext("d:identifiers/d:header_from", namespaces=NS),
            rec.findtext("d:identifiers/d:envelope_to", namespaces=NS),
            [(d.findtext("d:domain", namespaces=NS), d.findtext("d:selector", namespaces=NS),
              d.findtext("d:result", namespaces=NS)) for d in rec.findall("d:auth_results/d:dkim", NS)],
            rec.findtext("d:auth_results/d:spf/d:result", namespaces=NS),
        )
    assert rows == {
        ("127.0.0.1", "none"): (2, "pass", "pass", "sender.test", "example.com",
                                [("sender.test", "sel", "pass")], "pass"),
        ("127.0.0.2", "reject"): (1, "fail", "fail", "sender.test", "example.com", [], "fail"),
    }, rows

    # The rows are done with: the same day again sends nothing.
    assert collected(gw) == {}
    again = gw.cli("report", "send-dmarc", "--day", day)
    assert again.stdout == "", again.stdout
    time.sleep(1.5)
    assert len(reports_sink.files()) == 1


def test_domain_without_rua_contributes_nothing(gw, sink, reports_sink, dkim_key):
    # p=none without rua: DMARC is evaluated, but there is nobody to report to.
    code, text = send(gw.smtp, "news@norua.test", message=message("news@norua.test", "no rua"),
                      helo="mail.norua.test", check=False)
    assert code == 250, (code, text)
    # A message that does contribute, sent after it: once it is stored, the first one
    # would have been too.
    code, text = send(gw.smtp, "alice@sender.test",
                      message=signed("alice@sender.test", "after", dkim_key[0]),
                      helo="mail.sender.test", check=False)
    assert code == 250, (code, text)
    wait_for(lambda: collected(gw).get("sender.test") == 1, what="the DMARC result of sender.test")
    assert collected(gw) == {"sender.test": 1}
    # Yesterday has nothing to report.
    r = gw.cli("report", "send-dmarc")
    assert r.stdout == "" and "no DMARC aggregate reports" in r.stderr, (r.stdout, r.stderr)


def test_gateway_sends_yesterdays_reports_by_itself(gw, sink, reports_sink, dkim_key):
    code, text = send(gw.smtp, "alice@sender.test",
                      message=signed("alice@sender.test", "yesterday", dkim_key[0]),
                      helo="mail.sender.test", check=False)
    assert code == 250, (code, text)
    wait_for(lambda: collected(gw).get("sender.test") == 1, what="the DMARC result of sender.test")
    gw.stop()
    # As if the message had come a day earlier.
    gw.sql("UPDATE dmarc_results SET received_at = received_at - 86400")
    gw.config.write_text(gw.config.read_text().replace(
        "send_hour_utc = 23\n", "send_hour_utc = 0\n"))
    gw.start()
    (msg,) = reports_sink.wait_count(1) and reports_sink.messages()
    _, begin = today()
    (part,) = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
    root = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
    assert int(root.findtext("d:report_metadata/d:date_range/d:begin", namespaces=NS)) == begin - 86400
    assert [r.findtext("d:row/d:count", namespaces=NS) for r in root.findall("d:record", NS)] == ["1"]
    wait_for(lambda: collected(gw) == {}, what="the reported rows deleted")
    assert "DMARC aggregate report queued" in gw.log_text()
