"""The console's policy pages in a real browser (Debian's Chromium, driven by Selenium)
against the real gateway: a domain added through the console whose route is Postfix's
smtp-sink on loopback, its route test showing the sink's own 220 and 250 lines; an
internal network added and removed; the greylisting and DNSBL settings naming the
configuration file they come from, changed over it in the store and reset."""

import pytest
from selenium.webdriver.common.by import By

from peers import Gateway
from peers.browser import submit, wait_css

PASSWORD = "a console passphrase 42"


@pytest.fixture
def console(tmp_path):
    g = Gateway(tmp_path / "gw", "[greylist]\nmode = \"never\"\ndelay_secs = 123\n")
    g.cli("account", "add", "root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    g.start()
    g.url = f"https://127.0.0.1:{g.https}"
    yield g
    g.stop()


def test_add_a_domain_and_test_its_route(console, browser, sink):
    b, url = browser, console.url
    b.get(url + "/login")
    wait_css(b, "#username").send_keys("root")
    b.find_element(By.ID, "password").send_keys(PASSWORD)
    b.find_element(By.ID, "login-submit").click()
    wait_css(b, "#nav-policy").click()
    wait_css(b, "#domain-add")

    b.find_element(By.ID, "domain-name").send_keys("example.com")
    b.find_element(By.ID, "domain-routes").send_keys(f"127.0.0.1:{sink.port}")
    submit(b, "#domain-save")
    assert "domain example.com saved" in wait_css(b, "#policy-done").text
    row = wait_css(b, 'tr[data-domain="example.com"]')
    assert f"127.0.0.1:{sink.port}" in row.text
    assert "example.com" in console.cli("domain", "list").stdout

    submit(b, 'tr[data-domain="example.com"] [data-test=domain-test]')
    test = wait_css(b, '#route-test[data-domain="example.com"]')
    result = test.find_element(By.CSS_SELECTOR, ".route-test")
    assert result.get_attribute("data-ok") == "yes", test.text
    server = [li.text for li in test.find_elements(By.CSS_SELECTOR, '.dialogue li[data-side=server]')]
    assert any(line.startswith("S: 220") for line in server), server
    assert any(line.startswith("S: 250") for line in server), server
    client = [li.text for li in test.find_elements(By.CSS_SELECTOR, '.dialogue li[data-side=client]')]
    assert client[0].startswith("C: EHLO"), client
    assert client[-1] == "C: QUIT", client
    assert sink.messages() == [], "a route test sent mail"

    # The same test from the command line.
    out = console.cli("domain", "test", "example.com").stdout
    assert "S: 220" in out and "C: QUIT" in out, out


def test_add_and_remove_a_network_and_read_the_checks(console, browser):
    b, url = browser, console.url
    b.get(url + "/login")
    wait_css(b, "#username").send_keys("root")
    b.find_element(By.ID, "password").send_keys(PASSWORD)
    b.find_element(By.ID, "login-submit").click()
    wait_css(b, "#nav-policy")
    b.get(url + "/policy/networks")

    wait_css(b, "#network-cidr").send_keys("198.51.100.7/24")
    b.find_element(By.ID, "network-comment").send_keys("branch office")
    submit(b, "#network-save")
    row = wait_css(b, 'tr[data-cidr="198.51.100.0/24"]')
    assert "branch office" in row.text
    assert "198.51.100.0/24" in console.cli("network", "list").stdout

    wait_css(b, "#network-cidr").send_keys("not a network")
    submit(b, "#network-save")
    assert "expected an address or CIDR" in wait_css(b, "#policy-error").text

    submit(b, 'tr[data-cidr="198.51.100.0/24"] [data-test=network-remove]')
    wait_css(b, "#networks-empty")
    assert "198.51.100.0/24" not in console.cli("network", "list").stdout

    b.get(url + "/policy/checks")
    source = wait_css(b, "#checks-source").text
    assert str(console.config) in source
    delay = b.find_element(By.CSS_SELECTOR, '[data-test="value-greylist.delay_secs"]')
    assert delay.get_attribute("value") == "123"
    mode = b.find_element(By.CSS_SELECTOR, '[data-test="value-greylist.mode"]')
    assert mode.get_attribute("value") == "never"

    # Changed here: the store keeps it over the file's value, and says who changed it.
    mode.clear()
    mode.send_keys("always")
    submit(b, '[data-test="save-greylist.mode"]')
    assert "greylist.mode changed" in wait_css(b, "#policy-done").text
    assert "changed by root" in wait_css(b, '[data-test="changed-greylist.mode"]').text
    assert "greylist.mode = always" in console.cli("settings", "list").stdout
    # A value that does not fit is refused with the reason; nothing changes.
    delay = b.find_element(By.CSS_SELECTOR, '[data-test="value-greylist.delay_secs"]')
    delay.clear()
    delay.send_keys("soon")
    submit(b, '[data-test="save-greylist.delay_secs"]')
    assert "not a whole number" in wait_css(b, "#policy-error").text
    assert "greylist.delay_secs = 123" in console.cli("settings", "list").stdout
    # A DNSBL zone list in the file's inline syntax; a wrong return code is refused.
    zones = b.find_element(By.CSS_SELECTOR, '[data-test="value-dnsbl.zones"]')
    zones.clear()
    zones.send_keys('[{ zone = "bl.example", weight = 2.5, codes = ["127.0.0"] }]')
    submit(b, '[data-test="save-dnsbl.zones"]')
    assert "dnsbl.zones" in wait_css(b, "#policy-error").text
    zones = b.find_element(By.CSS_SELECTOR, '[data-test="value-dnsbl.zones"]')
    zones.clear()
    zones.send_keys('[{ zone = "bl.example", weight = 2.5, codes = ["127.0.0.[2..11]"] }]')
    submit(b, '[data-test="save-dnsbl.zones"]')
    row = wait_css(b, 'tr[data-zone="bl.example"]')
    assert "dnsbl.bl.example" in row.text and "127.0.0.[2..11]" in row.text
    # Reset gives the key back to the file.
    submit(b, '[data-test="reset-greylist.mode"]')
    assert "configuration file's again" in wait_css(b, "#policy-done").text
    mode = b.find_element(By.CSS_SELECTOR, '[data-test="value-greylist.mode"]')
    assert mode.get_attribute("value") == "never"
    assert b.find_elements(By.CSS_SELECTOR, '[data-test="changed-greylist.mode"]') == []
