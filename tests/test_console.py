"""The web console in a real browser (Debian's Chromium, driven by Selenium) against the
real gateway: logging in with a TOTP second factor, finding a message by its subject and
seeing why it was held, releasing it from the quarantine to the sink, editing a rule,
the dashboard's charts, and a digest link that a GET does not act on and a POST does."""

import json
import re
import time

import pytest
from selenium.webdriver.common.by import By

from peers import Gateway, dns_server, free_port, send, wait_for
from peers.browser import csp_refusals, submit, totp, wait_css

PASSWORD = "a console passphrase 42"
RULES = '''[[rule]]
name = "hold invoices"
when = [{ header = "subject", matches = "^invoice" }]
actions = [{ action = "quarantine", class = "spam" }]
'''


@pytest.fixture
def console(tmp_path, sink):
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"
                                 "[greylist]\nmode = \"never\"\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.cli("account", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    g.cli("rule", "add", str(rules))
    g.start()
    g.url = f"https://127.0.0.1:{g.https}"
    yield g
    g.stop()


def log_in(b, url, name="root", password=PASSWORD):
    b.get(url + "/login")
    wait_css(b, "#username").send_keys(name)
    b.find_element(By.ID, "password").send_keys(password)
    b.find_element(By.ID, "login-submit").click()


def inbound(g, subject, body="Please pay by Friday.\r\n"):
    msg = (f"From: Alice <alice@outside.test>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
           f"Message-ID: <{time.monotonic_ns()}@outside.test>\r\n\r\n{body}").encode()
    send(g.smtp, "alice@outside.test", ("bob@example.com",), message=msg)


def test_totp_login_find_why_held_and_release(console, browser, sink):
    b, url = browser, console.url
    log_in(b, url)
    wait_css(b, "#nav-dashboard")

    # Enrol an authenticator app: the secret is shown with its QR code, a code confirms it.
    b.get(url + "/account")
    submit(b, "#totp-enrol")
    secret = wait_css(b, "#totp-secret").text.strip()
    qr = b.find_element(By.ID, "totp-qr")
    assert qr.get_attribute("src").startswith("data:image/svg+xml") and qr.size["width"] > 0
    enrolled_at = time.time()
    b.find_element(By.ID, "totp-code").send_keys(totp(secret, enrolled_at))
    submit(b, "#totp-confirm")
    codes = wait_css(b, "#recovery-codes").text.split()
    assert len(codes) == 10, codes

    # Log out; the password alone no longer logs in.
    submit(b, "#logout")
    log_in(b, url)
    totp_field = wait_css(b, "#totp")
    assert b.find_elements(By.ID, "nav-dashboard") == []
    # A code is used once: wait for the next 30-second step.
    time.sleep(max(0.0, 30 - enrolled_at % 30) + 0.5)
    totp_field.send_keys(totp(secret, time.time()))
    submit(b, "#totp-submit")
    wait_css(b, "#nav-dashboard")

    # Mail held by the rule; found by its subject in message tracking, with why.
    inbound(console, "invoice 4711 for March")
    b.get(url + "/messages")
    wait_css(b, "#q-subject").send_keys("INVOICE 4711")
    submit(b, "#q-submit")
    link = wait_css(b, "#messages a")
    link.click()
    wait_css(b, "#message-story")
    assert "hold invoices" in b.find_element(By.ID, "m-rule").text
    assert "quarantine" in b.find_element(By.ID, "m-verdict").text
    assert "invoice 4711 for March" in b.find_element(By.ID, "m-subject").text
    assert b.find_element(By.ID, "findings").is_displayed()
    assert "127.0.0.1" in b.find_element(By.ID, "m-client-ip").text

    # Released from the quarantine page: it reaches the sink.
    b.get(url + "/quarantine")
    row = wait_css(b, "tr[data-id]")
    assert "invoice 4711" in row.text
    row.find_element(By.CSS_SELECTOR, "button[name=action][value=release]").click()
    wait_css(b, "#quarantine-done")
    sink.wait_count(1)
    assert sink.messages()[0]["Subject"] == "invoice 4711 for March"
    held = json.loads(console.cli("quarantine", "list", "--json").stdout)
    assert [h["state"] for h in held] == ["released"] or held == [], held


def test_rule_edit_and_dashboard_chart(console, browser, tmp_path):
    b, url = browser, console.url
    log_in(b, url)
    wait_css(b, "#nav-dashboard")

    # A wrong rule is refused with its line; a right one is saved and decides at once.
    b.get(url + "/rules")
    area = wait_css(b, "#rules-toml")
    area.clear()
    area.send_keys('[[rule]]\nname = "tag offers"\n\nwhen = [{ header = "subject", colour = "red" }]\n'
                   'actions = []\n')
    submit(b, "#rules-save")
    error = wait_css(b, "#rules-error").text
    assert "colour" in error and ":4" in error, error
    area = b.find_element(By.ID, "rules-toml")
    area.clear()
    area.send_keys('[[rule]]\nname = "tag offers"\nwhen = [{ header = "subject", matches = "^offer" }]\n'
                   'actions = [{ action = "tag_subject", tag = "[OFFER]" }]\n')
    submit(b, "#rules-save")
    wait_css(b, 'li[data-rule="tag offers"]')
    assert "tag offers" in console.cli("rule", "list").stdout

    # The dashboard's charts are drawn from the log: mail sent now shows as bars.
    for i in range(3):
        inbound(console, f"offer {i}")
    inbound(console, "invoice 1")
    wait_for(lambda: len(json.loads(console.cli("log", "search", "--json").stdout)) == 4,
             what="four messages logged")
    b.get(url + "/")
    chart = wait_css(b, "svg.chart")
    bars = [r for r in chart.find_elements(By.CSS_SELECTOR, "rect") if r.size["height"] > 0]
    assert bars, chart.get_attribute("outerHTML")[:500]
    shot = tmp_path / "dashboard.png"
    assert b.save_screenshot(str(shot))
    png = chart.screenshot_as_png
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_dashboard_service_health(tmp_path, browser, sink):
    """htmx (vendored) loads the service checks into the dashboard under the strict CSP:
    the store and DNS (a real DNS server on loopback) answer, the sink's route answers SMTP,
    a route to a closed port fails, and so does a clamd endpoint where nothing listens."""
    closed_smtp, closed_clamd = free_port(), free_port()
    with dns_server("example.com. 60 IN MX 10 mx.example.com.\n") as dns_port:
        g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\ntimeout_secs = 1\n"
                                     f"[antivirus]\nclamd = [\"127.0.0.1:{closed_clamd}\"]\nfail_open = true\n")
        g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
        g.cli("domain", "add", "down.example", "--route", f"127.0.0.1:{closed_smtp}")
        g.cli("account", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
        g.start()
        try:
            url = f"https://127.0.0.1:{g.https}"
            b = browser
            log_in(b, url)
            wait_css(b, "#nav-dashboard")
            b.get(url + "/")
            table = wait_css(b, "#services #services-table", timeout=20)
            rows = {}
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
                cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                rows[(cells[0], cells[1])] = (cells[2], cells[3])
            assert rows[("store", "postgres" if g.pg_url else "sqlite")][0] == "ok", rows
            # The first domain by name: the DNS server answers that it has no such name.
            assert rows[("dns", "MX down.example")][0] == "ok", rows
            clamd = rows[("clamd", f"127.0.0.1:{closed_clamd}")]
            assert clamd[0] == "failed" and clamd[1], rows
            assert rows[("route", f"example.com → 127.0.0.1:{sink.port}")][0] == "ok", rows
            dead = rows[("route", f"down.example → 127.0.0.1:{closed_smtp}")]
            assert dead[0] == "failed" and dead[1], rows
            summary = b.find_element(By.CSS_SELECTOR, "[data-test=services-summary]").text
            assert "Some services do not answer" in summary, summary
            assert csp_refusals(b) == []

            # Without script the dashboard links to the same checks as a page of their own.
            b.get(url + "/services")
            assert wait_css(b, "h1").text == "Services"
            assert "example.com → 127.0.0.1" in wait_css(b, "#services-table").text
        finally:
            g.stop()


def test_digest_link_get_shows_post_releases(console, browser, sink):
    b = browser
    inbound(console, "invoice 99 in the digest")
    console.cli("quarantine", "digest")
    sink.wait_count(1)
    (digest,) = sink.messages()
    text = next(p for p in digest.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    token = re.search(r"/release\?t=(\S+)", text).group(1)

    # Opening the link (what a link scanner does) shows what it would do, and does nothing.
    b.get(f"{console.url}/q/release?t={token}")
    assert "invoice 99 in the digest" in wait_css(b, "[data-test=digest-subject]").text
    time.sleep(1)
    assert len(sink.files()) == 1
    held = json.loads(console.cli("quarantine", "list", "--json").stdout)
    assert [h["state"] for h in held if "invoice 99" in h["subject"]] == ["held"], held
    # The button posts: now it is released and arrives.
    submit(b, "#digest-confirm")
    sink.wait_count(2)
    assert any(m["Subject"] == "invoice 99 in the digest" for m in sink.messages())
