"""Shared harness for the integration tests: the fixtures. The peers they start (the real
`portcullis` binary, Postfix's smtp-sink, Postfix, clamd, OpenDKIM, DNS and HTTPS servers,
a test PKI) are in tests/peers, on loopback with free ports and temporary directories. A
missing peer is an error, never a skip."""

import pytest

# Re-exported: the names the test files once imported from here.
from peers import BIN, ROOT, Gateway, Sink, dns_server, free_port, require, wait_for, wait_port  # noqa: F401
from peers.dns import Zone  # noqa: F401
from peers.pki import Pki, dkim_key as new_dkim_key
from peers.browser import chromium


@pytest.fixture
def sink(tmp_path):
    with Sink(tmp_path / "sink") as s:
        yield s


@pytest.fixture
def gateway(tmp_path, sink):
    """A running gateway accepting example.com, routed to the sink; alice@example.com
    may authenticate with password 'correct horse'."""
    g = Gateway(tmp_path / "gw", extra_config="[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.cli("user", "add", "alice@example.com", input="correct horse\n")
    g.start()
    yield g
    g.stop()


@pytest.fixture
def pki(tmp_path):
    """A test CA with its certificates (peers.pki.Pki)."""
    return Pki(tmp_path / "pki")


@pytest.fixture
def slapd(tmp_path, pki):
    """A private OpenLDAP server with the test tree (peers.slapd), plain/StartTLS and LDAPS."""
    from peers.slapd import Slapd
    with Slapd(tmp_path / "slapd", pki) as s:
        yield s


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    """An RSA DKIM key for selector `sel`: (private key PEM, public key for p=)."""
    key = tmp_path_factory.mktemp("dkim") / "key.pem"
    public = new_dkim_key(key, "rsa", 1024)
    return key.read_bytes(), public


@pytest.fixture
def browser():
    """A headless Chromium from Debian's packages, quit after the test."""
    b = chromium()
    yield b
    b.quit()
