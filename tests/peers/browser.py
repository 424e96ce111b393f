"""A headless Chromium driven through ChromeDriver, both from Debian's packages (chromium,
chromium-driver), by Selenium: never a downloaded browser. Its network stays on loopback:
the flags turn off every background connection Chromium would otherwise try."""

import tempfile

from peers.common import require


def chromium(width=1280, height=900):
    """A new browser session (the caller quits it). The gateway's console certificate is
    self-signed, so certificate errors are accepted."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = require("chromium")
    driver = require("chromedriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='portcullis-chromium-')}"]:
        opts.add_argument(flag)
    opts.accept_insecure_certs = True
    # The page's console messages (CSP refusals among them) for `b.get_log("browser")`.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def wait_css(b, css, timeout=10):
    """The element `css` names, once the page has it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(b, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def submit(b, css, timeout=30):
    """Click a form's button and wait for the page it loads: an element found right after
    the click could still be the old page's."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = b.find_element(By.TAG_NAME, "html")
    b.find_element(By.CSS_SELECTOR, css).click()

    def gone(_):
        try:
            return expected_conditions.staleness_of(old)(b)
        except WebDriverException as e:
            # Chromium sometimes says so in other words while the new page replaces it.
            if "does not belong to the document" in str(e):
                return True
            raise
    WebDriverWait(b, timeout).until(gone)


def totp(secret_base32, at):
    """The RFC 6238 code (SHA-1, six digits, 30-second steps) of `secret_base32` at unix
    time `at`, as an authenticator app shows it."""
    import base64
    import hashlib
    import hmac
    import struct

    key = base64.b32decode(secret_base32.upper() + "=" * (-len(secret_base32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def csp_refusals(b):
    """What the browser refused under the page's Content-Security-Policy so far."""
    return [e["message"] for e in b.get_log("browser") if "Content Security Policy" in e["message"]]
