"""The console's DKIM and Reports pages in a real browser (Debian's Chromium, driven by
Selenium) against the real gateway, whose resolver asks a DNS server on loopback: a key
made in the console shows the record to publish; "Check DNS" says it is not found, then,
once the record is in the zone, that it matches, and that a wrong record differs. The CLI's
`dkim check` agrees. A DMARC aggregate and a TLS-RPT report taken in with `portcullis
report import` are listed, opened and charted."""

import gzip
import json
import time

import pytest
from dnslib import RR
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from peers import Gateway
from peers.browser import submit, wait_css
from peers.dns import DnsServer, Zone
from test_console import log_in
from test_reports import DMARC_XML, TLSRPT, report_message, write

PASSWORD = "a console passphrase 42"


@pytest.fixture
def zone():
    z = Zone('example.com. 60 IN TXT "v=spf1 -all"')
    server = DnsServer(z)
    z.port = server.port
    yield z
    server.stop()


@pytest.fixture
def console(tmp_path, zone):
    g = Gateway(tmp_path / "gw",
                f'[dns]\nnameservers = ["127.0.0.1:{zone.port}"]\ntimeout_secs = 2\n')
    g.cli("account", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    dmarc = report_message("application", "gzip",
                           "receiver.example!example.com!1795305600!1795391999.xml.gz",
                           gzip.compress(DMARC_XML.format(report_id="console-1").encode()))
    g.dmarc_id = g.cli("report", "import", write(g, "dmarc.eml", dmarc)).stdout.split()[-1]
    tls = report_message("application", "tlsrpt+gzip",
                         "sender.example!example.com!1795305600!1795391999!001.json.gz",
                         gzip.compress(json.dumps(TLSRPT).encode()),
                         headers=[("TLS-Report-Domain", "example.com"),
                                  ("TLS-Report-Submitter", "sender.example")])
    g.tls_id = g.cli("report", "import", write(g, "tls.eml", tls)).stdout.split()[-1]
    # One of yesterday, for the charts of the last 30 days.
    begin = (int(time.time()) // 86400 - 1) * 86400
    recent = DMARC_XML.format(report_id="console-2").replace(
        "1795305600", str(begin)).replace("1795391999", str(begin + 86399))
    g.recent_id = g.cli("report", "import", write(g, "recent.eml", report_message(
        "application", "gzip", f"receiver.example!example.com!{begin}!{begin + 86399}.xml.gz",
        gzip.compress(recent.encode())))).stdout.split()[-1]
    g.start()
    g.url = f"https://127.0.0.1:{g.https}"
    yield g
    g.stop()


def publish(zone, name, txt):
    zone.rrs = [rr for rr in zone.rrs if str(rr.rname).rstrip(".") != name.rstrip(".")]
    zone.rrs += RR.fromZone(f'{name} 60 IN TXT "{txt}"')


def check_dns(b, selector):
    submit(b, f'tr[data-selector="{selector}"] [data-test=dkim-check]')
    return wait_css(b, "#dkim-check").get_attribute("data-status")


def test_key_made_in_the_console_is_checked_in_dns(console, browser, zone):
    b, url = browser, console.url
    log_in(b, url)
    wait_css(b, "#nav-dkim")
    submit(b, "#nav-dkim")
    wait_css(b, "#dkim-domain").send_keys("example.com")
    Select(b.find_element(By.ID, "dkim-algorithm")).select_by_value("ed25519")
    b.find_element(By.ID, "dkim-selector").send_keys("web1")
    submit(b, "#dkim-generate-submit")
    assert "web1" in wait_css(b, "#dkim-done").text
    row = b.find_element(By.CSS_SELECTOR, 'tr[data-selector="web1"]')
    assert row.get_attribute("data-state") == "active"
    name = row.find_element(By.CSS_SELECTOR, "input.dkim-name").get_attribute("value")
    txt = row.find_element(By.CSS_SELECTOR, "textarea.dkim-txt").get_attribute("value")
    assert name == "web1._domainkey.example.com."
    assert txt.startswith("v=DKIM1; k=ed25519; p="), txt
    assert "PRIVATE" not in b.page_source

    assert check_dns(b, "web1") == "not_found"
    assert b.find_element(By.ID, "dkim-check-expected").text == txt

    publish(zone, name, txt)
    assert check_dns(b, "web1") == "matches"
    r = console.cli("dkim", "check", "example.com", "web1")
    assert "published and matches" in r.stdout, r.stdout

    wrong = "v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    publish(zone, name, wrong)
    assert check_dns(b, "web1") == "differs"
    published = [e.text for e in b.find_elements(By.CSS_SELECTOR, ".dkim-check-published")]
    assert published == [wrong]
    r = console.cli("dkim", "check", "example.com", check=False)
    assert r.returncode == 1 and "published but differs" in r.stdout, r.stdout

    # Deleting asks first: retire (confirmed), then delete (confirmed).
    submit(b, 'tr[data-selector="web1"] [data-test=dkim-retire]')
    submit(b, "#dkim-confirm")
    wait_css(b, 'tr[data-selector="web1"][data-state="retired"]')
    submit(b, 'tr[data-selector="web1"] [data-test=dkim-delete]')
    assert "cannot be undone" in wait_css(b, "#dkim-question").text
    submit(b, "#dkim-confirm")
    wait_css(b, "#dkim-empty")


def test_imported_reports_are_listed_opened_and_charted(console, browser):
    b, url = browser, console.url
    log_in(b, url)
    wait_css(b, "#nav-reports")
    submit(b, "#nav-reports")
    rows = b.find_elements(By.CSS_SELECTOR, "#reports tr[data-id]")
    assert {r.get_attribute("data-id") for r in rows} == \
        {console.dmarc_id, console.tls_id, console.recent_id}

    submit(b, f'#reports tr[data-id="{console.dmarc_id}"] a')
    assert wait_css(b, "#report-org").text == "receiver.example"
    sources = b.find_elements(By.CSS_SELECTOR, "#report-rows tr[data-source]")
    assert [s.get_attribute("data-source") for s in sources] == ["192.0.2.10", "203.0.113.99"]
    assert "reject" in sources[1].text and "spoofer.example" in sources[1].text

    b.get(f"{url}/reports/{console.tls_id}")
    policy = wait_css(b, '.tls-policy[data-policy-domain="example.com"]')
    assert policy.find_element(By.CSS_SELECTOR, ".tls-success").text == "5326"
    assert "certificate-expired" in policy.text
    assert "X509_V_ERR_CERT_HAS_EXPIRED" in policy.text

    # Filters, and the domain's charts: yesterday's bar, 40 messages passed and 2 failed.
    b.get(f"{url}/reports?org=sender&kind=tlsrpt")
    rows = b.find_elements(By.CSS_SELECTOR, "#reports tr[data-id]")
    assert [r.get_attribute("data-id") for r in rows] == [console.tls_id]
    b.get(f"{url}/reports?domain=example.com&kind=dmarc")
    chart = wait_css(b, "#chart-dmarc svg.chart[data-chart=days]")
    titles = [t.get_attribute("textContent") for t in chart.find_elements(By.TAG_NAME, "title")]
    assert any("40 messages pass, 2 fail" in t for t in titles), titles
    orgs = b.find_element(By.CSS_SELECTOR, "#chart-dmarc svg.chart[data-chart=orgs]")
    assert "receiver.example" in orgs.get_attribute("textContent")
