"""Incoming DMARC aggregate (RFC 7489 §7.2) and TLS-RPT (RFC 8460) reports: messages built here
with Python's email package, as a reporter would send them (gzipped XML, gzipped JSON, zipped
XML), taken in with `portcullis report import`, then listed and shown. A second copy of a report
is stored once; a message without a report is refused with a clear message."""

import gzip
import io
import json
import zipfile
from email.message import EmailMessage

from peers import Gateway

DMARC_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <version>1.0</version>
  <report_metadata>
    <org_name>receiver.example</org_name>
    <email>noreply-dmarc-support@receiver.example</email>
    <report_id>{report_id}</report_id>
    <date_range><begin>1795305600</begin><end>1795391999</end></date_range>
  </report_metadata>
  <policy_published>
    <domain>example.com</domain>
    <adkim>r</adkim><aspf>r</aspf><p>reject</p><sp>reject</sp><pct>100</pct>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.10</source_ip>
      <count>40</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results>
      <dkim><domain>example.com</domain><selector>rsa-202611</selector><result>pass</result></dkim>
      <spf><domain>example.com</domain><result>pass</result></spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>203.0.113.99</source_ip>
      <count>2</count>
      <policy_evaluated><disposition>reject</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated>
    </row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results>
      <spf><domain>spoofer.example</domain><result>fail</result></spf>
    </auth_results>
  </record>
</feedback>
"""

TLSRPT = {
    "organization-name": "Sender Example Inc.",
    "date-range": {"start-datetime": "2026-11-22T00:00:00Z", "end-datetime": "2026-11-22T23:59:59Z"},
    "contact-info": "smtp-tls-reporting@sender.example",
    "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    "policies": [{
        "policy": {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: testing", "mx: mx.example.com", "max_age: 86400"],
            "policy-domain": "example.com",
            "mx-host": ["mx.example.com"],
        },
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [{
            "result-type": "certificate-expired",
            "sending-mta-ip": "198.51.100.62",
            "receiving-ip": "192.0.2.25",
            "receiving-mx-hostname": "mx.example.com",
            "failed-session-count": 303,
            "failure-reason-code": "X509_V_ERR_CERT_HAS_EXPIRED",
        }],
    }],
}


def report_message(maintype, subtype, filename, payload, headers=()):
    msg = EmailMessage()
    msg["From"] = "reports@sender.example"
    msg["To"] = "dmarc-reports@example.com"
    msg["Subject"] = f"Report for example.com: {filename}"
    for name, value in headers:
        msg[name] = value
    msg.set_content("This is an aggregate report for example.com.\n")
    msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def write(g, name, data):
    path = g.dir / name
    path.write_bytes(data)
    return str(path)


def listed(g, *args):
    out = g.cli("report", "list", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_reports_imported_listed_and_shown(tmp_path):
    g = Gateway(tmp_path / "gw")

    dmarc = report_message("application", "gzip",
                           "receiver.example!example.com!1795305600!1795391999.xml.gz",
                           gzip.compress(DMARC_XML.format(report_id="rcv-0001").encode()))
    r = g.cli("report", "import", write(g, "dmarc.eml", dmarc))
    assert r.stdout.startswith("stored report "), r.stdout
    dmarc_id = r.stdout.split()[-1]

    tls = report_message("application", "tlsrpt+gzip",
                         "sender.example!example.com!1795305600!1795391999!001.json.gz",
                         gzip.compress(json.dumps(TLSRPT).encode()),
                         headers=[("TLS-Report-Domain", "example.com"),
                                  ("TLS-Report-Submitter", "sender.example")])
    r = g.cli("report", "import", write(g, "tls.eml", tls))
    tls_id = r.stdout.split()[-1]
    assert tls_id != dmarc_id

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("other.example!example.com!1795305600!1795391999.xml",
                   DMARC_XML.format(report_id="rcv-zip-7"))
    zipped = report_message("application", "zip", "report.zip", buf.getvalue())
    zip_id = g.cli("report", "import", write(g, "zip.eml", zipped)).stdout.split()[-1]

    rows = listed(g)
    assert [x["id"] for x in rows] == [zip_id, tls_id, dmarc_id]  # newest first
    d = next(x for x in rows if x["id"] == dmarc_id)
    assert (d["kind"], d["org"], d["report_id"], d["domain"]) == \
        ("dmarc", "receiver.example", "rcv-0001", "example.com")
    assert (d["begin"], d["end"]) == (1795305600, 1795391999)
    assert (d["messages"], d["pass"], d["fail"]) == (42, 40, 2)
    t = next(x for x in rows if x["id"] == tls_id)
    assert (t["kind"], t["org"], t["report_id"], t["domain"]) == \
        ("tlsrpt", "Sender Example Inc.", TLSRPT["report-id"], "example.com")
    assert (t["messages"], t["pass"], t["fail"]) == (5629, 5326, 303)

    assert [x["id"] for x in listed(g, "--kind", "tlsrpt")] == [tls_id]
    assert {x["id"] for x in listed(g, "--kind", "dmarc", "--domain", "EXAMPLE.COM")} == {dmarc_id, zip_id}
    assert listed(g, "--domain", "example.org") == []
    text = g.cli("report", "list").stdout
    assert len(text.splitlines()) == 3 and "rcv-0001" in text

    show = g.cli("report", "show", dmarc_id).stdout
    assert "receiver.example" in show and "rcv-0001" in show
    assert "192.0.2.10" in show and "count=40" in show and "disposition=none" in show
    assert "203.0.113.99" in show and "disposition=reject" in show
    assert "example.com=pass" in show and "spoofer.example=fail" in show
    assert "2026-11-22T00:00:00Z" in show

    show = g.cli("report", "show", tls_id).stdout
    assert "policy sts example.com" in show and "success=5326" in show and "failure=303" in show
    assert "certificate-expired" in show and "198.51.100.62" in show and "mx.example.com" in show
    assert "X509_V_ERR_CERT_HAS_EXPIRED" in show

    stored = json.loads(g.cli("report", "show", tls_id, "--json").stdout)
    assert stored["report-id"] == TLSRPT["report-id"]

    missing = g.cli("report", "show", "NOSUCHID", check=False)
    assert missing.returncode != 0 and "no report" in missing.stderr


def test_duplicate_stored_once_and_other_mail_refused(tmp_path):
    g = Gateway(tmp_path / "gw")
    dmarc = report_message("application", "gzip", "r.xml.gz",
                           gzip.compress(DMARC_XML.format(report_id="dup-1").encode()))
    path = write(g, "dmarc.eml", dmarc)
    first = g.cli("report", "import", path).stdout.split()[-1]
    # A reporter's retry: same report, another message.
    again = g.cli("report", "import", write(g, "again.eml", dmarc.replace(b"Subject: ", b"Subject: Re: ")))
    assert "already stored" in again.stdout and again.stdout.split()[-1] == first
    assert [x["id"] for x in listed(g)] == [first]

    plain = EmailMessage()
    plain["From"] = "alice@example.net"
    plain["To"] = "bob@example.com"
    plain["Subject"] = "lunch?"
    plain.set_content("Noon at the usual place?\n")
    r = g.cli("report", "import", write(g, "plain.eml", plain.as_bytes()), check=False)
    assert r.returncode != 0
    assert "not a DMARC aggregate or TLS-RPT report" in r.stderr, r.stderr

    # An XML attachment that is not a DMARC report, and a gzip that is not gzip.
    xml = report_message("application", "xml", "invoice.xml", b"<invoice><total>3</total></invoice>")
    r = g.cli("report", "import", write(g, "xml.eml", xml), check=False)
    assert r.returncode != 0 and "not a DMARC aggregate or TLS-RPT report" in r.stderr
    bad = report_message("application", "gzip", "r.xml.gz", b"this is not gzip")
    r = g.cli("report", "import", write(g, "bad.eml", bad), check=False)
    assert r.returncode != 0 and "gzip" in r.stderr

    missing = g.cli("report", "import", str(g.dir / "nope.eml"), check=False)
    assert missing.returncode != 0 and "nope.eml" in missing.stderr
    assert [x["id"] for x in listed(g)] == [first]
