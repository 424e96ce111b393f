"""The directory against a real OpenLDAP slapd (peers.slapd, started here on loopback):
recipients verified at RCPT (550 5.1.1 unknown, 451 4.4.3 when the directory is down,
resumed when it is back), SMTP AUTH by search-then-bind and by direct bind, disabled
accounts refused, nested groups, failover to a second server, plain, StartTLS and LDAPS
verified against a test CA, and `portcullis directory test|auth`."""

import smtplib
import ssl

import pytest

from conftest import Gateway
from peers.common import free_port, wait_for
from peers.slapd import SERVICE_DN, SERVICE_PASSWORD


def directory_config(tmp_path, slapd, mode="starttls", servers=None, extra="", domain_extra=""):
    """[directory.corp] on `slapd` and example.org verified and authenticated by it."""
    secret = tmp_path / "ldap.pw"
    secret.write_text(SERVICE_PASSWORD + "\n")
    servers = servers or [slapd.url(mode)]
    return f"""
[directory.corp]
type = "ldap"
flavour = "openldap"
servers = [{", ".join(f'"{s}"' for s in servers)}]
starttls = {"true" if mode == "starttls" else "false"}
ca_file = "{slapd.ca}"
bind_dn = "{SERVICE_DN}"
bind_password_file = "{secret}"
base_dn = "dc=example,dc=org"
connect_timeout_secs = 2
timeout_secs = 2
{extra}

[domain."example.org"]
recipients = "corp"
auth = "corp"
{domain_extra}
"""


@pytest.fixture
def ldap_gateway(tmp_path, sink, slapd, request):
    mode = getattr(request, "param", "starttls")
    g = Gateway(tmp_path / "gw", extra_config=directory_config(tmp_path, slapd, mode))
    g.cli("domain", "add", "example.org", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    yield g
    g.stop()


def rcpt(port, *addresses):
    """The RCPT replies of one transaction from an outside client."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("sender@outside.test")
        return [s.rcpt(a) for a in addresses]


def insecure_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def login(g, user, password):
    with smtplib.SMTP_SSL("127.0.0.1", g.submissions, context=insecure_tls(), timeout=30) as s:
        try:
            s.login(user, password)
            return 235
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code


@pytest.mark.parametrize("ldap_gateway", ["plain", "starttls", "ldaps"], indirect=True)
def test_recipients_verified_at_rcpt(ldap_gateway, sink):
    g = ldap_gateway
    replies = rcpt(g.smtp, "alice@example.org", "AL@example.org", "nobody@example.org",
                   "carol@example.org")
    assert [code for code, _ in replies] == [250, 250, 550, 250], replies
    assert b"5.1.1" in replies[2][1]
    # An accepted message is delivered; the refused recipient is in the message log with
    # the source that decided.
    with smtplib.SMTP("127.0.0.1", g.smtp, timeout=30) as s:
        s.sendmail("sender@outside.test", ["bob@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
    sink.wait_count(1)
    wait_for(lambda: "directory corp" in g.cli("log", "search", "--json").stdout,
             what="the refused recipient in the message log")
    assert "nobody@example.org" in g.cli("log", "search", "--json").stdout
    # The accepted recipient's record says which source vouched for it.
    wait_for(lambda: "bob@example.org by corp" in g.cli("log", "search", "--json").stdout,
             what="the directory.known finding in the message log")


def test_auth_against_ldap(ldap_gateway):
    g = ldap_gateway
    assert login(g, "alice@example.org", "alice pw") == 235
    assert login(g, "alice@example.org", "wrong") == 535
    assert login(g, "nobody@example.org", "alice pw") == 535
    # Disabled (userAccountControl bit 2): refused with the right password.
    assert login(g, "carol@example.org", "carol pw") == 535
    assert login(g, "bob@example.org", "bob pw") == 235
    log = g.log.read_text()
    assert "alice pw" not in log and "carol pw" not in log


def test_direct_bind_and_uid_logins(tmp_path, sink, slapd):
    config = directory_config(
        tmp_path, slapd, "ldaps",
        extra='login = "bind"\nbind_dn_template = "uid=%u,ou=people,dc=example,dc=org"',
        domain_extra="\n[domain.\"*\"]\nauth = \"corp\"\n")
    g = Gateway(tmp_path / "gw", extra_config=config)
    g.cli("domain", "add", "example.org", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        assert login(g, "alice@example.org", "alice pw") == 235
        assert login(g, "alice@example.org", "bob pw") == 535
        # A login without a domain goes to "*".
        assert login(g, "bob", "bob pw") == 235
    finally:
        g.stop()


def test_directory_down_tempfails_and_resumes(tmp_path, sink, slapd):
    # No cache: every RCPT asks the server.
    config = directory_config(tmp_path, slapd, "starttls",
                              extra="cache_ttl_secs = 0\nnegative_cache_ttl_secs = 0")
    g = Gateway(tmp_path / "gw", extra_config=config)
    g.cli("domain", "add", "example.org", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        assert rcpt(g.smtp, "alice@example.org")[0][0] == 250
        slapd.stop()
        (code, text), = rcpt(g.smtp, "alice@example.org")
        assert code == 451 and b"4.4.3" in text, (code, text)
        (code, text), = rcpt(g.smtp, "nobody@example.org")
        assert code == 451, (code, text)
        # A login meets a temporary failure, never a refusal.
        assert login(g, "alice@example.org", "alice pw") == 454
        slapd.start()
        # A server that failed is passed over for connect_timeout_secs (2 s here), then
        # asked again.
        wait_for(lambda: rcpt(g.smtp, "alice@example.org")[0][0] == 250, timeout=10,
                 what="the directory back")
        assert [c for c, _ in rcpt(g.smtp, "alice@example.org", "nobody@example.org")] == [250, 550]
    finally:
        g.stop()


def test_down_with_accept_setting(tmp_path, sink, slapd):
    config = directory_config(tmp_path, slapd, "starttls", domain_extra='on_unavailable = "accept"')
    g = Gateway(tmp_path / "gw", extra_config=config)
    g.cli("domain", "add", "example.org", "--route", f"127.0.0.1:{sink.port}")
    slapd.stop()
    g.start()
    try:
        assert rcpt(g.smtp, "nobody@example.org")[0][0] == 250
    finally:
        g.stop()


def test_failover_to_second_server(tmp_path, sink, slapd):
    dead = f"ldap://127.0.0.1:{free_port()}"
    config = directory_config(tmp_path, slapd, "starttls", servers=[dead, slapd.url()])
    g = Gateway(tmp_path / "gw", extra_config=config)
    g.cli("domain", "add", "example.org", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        assert [c for c, _ in rcpt(g.smtp, "alice@example.org", "nobody@example.org")] == [250, 550]
        assert login(g, "alice@example.org", "alice pw") == 235
    finally:
        g.stop()


def test_certificate_verified(tmp_path, sink, slapd):
    """LDAPS to a server whose CA is not trusted (no ca_file: the WebPKI roots) is a
    directory that cannot answer, never an accepted connection."""
    config = directory_config(tmp_path, slapd, "ldaps").replace(f'ca_file = "{slapd.ca}"\n', "")
    g = Gateway(tmp_path / "gw", extra_config=config)
    r = g.cli("directory", "test", "alice@example.org", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unavailable" in r.stdout


def test_cli_test_and_auth(tmp_path, slapd):
    g = Gateway(tmp_path / "gw", extra_config=directory_config(tmp_path, slapd, "ldaps"))
    r = g.cli("directory", "test", "alice@example.org")
    out = r.stdout
    assert "source:   corp" in out and slapd.url("ldaps") in out, out
    assert "filter:   (|(mail=alice@example.org)(mailLocalAddress=alice@example.org))" in out
    assert "entry:    uid=alice,ou=people,dc=example,dc=org" in out
    assert "name:     Alice Liddell" in out
    # Nested: eng directly, staff through eng, all through staff.
    assert "groups:   all, eng, staff" in out, out
    assert "took:" in out
    r = g.cli("directory", "test", "al@example.org")
    assert "entry:    uid=alice" in r.stdout
    r = g.cli("directory", "test", "nobody@example.org", check=False)
    assert r.returncode == 1 and "unknown" in r.stdout, r.stdout
    r = g.cli("directory", "test", "x*)(uid=*@example.org", check=False)
    assert r.returncode == 1, r.stdout
    r = g.cli("directory", "auth", "alice@example.org", input="alice pw\n")
    assert "answer:   accepted" in r.stdout and "entry:    uid=alice" in r.stdout, r.stdout
    assert "alice pw" not in r.stdout + r.stderr
    # The uid as the login, asked of the source by name (a login without a domain goes to
    # "*", of which this configuration has none).
    r = g.cli("directory", "auth", "alice", "--source", "corp", input="alice pw\n")
    assert "answer:   accepted" in r.stdout, r.stdout
    r = g.cli("directory", "auth", "alice", "--source", "corp", input="wrong\n", check=False)
    assert r.returncode == 1 and "wrong password" in r.stdout, r.stdout
    r = g.cli("directory", "auth", "carol@example.org", input="carol pw\n", check=False)
    assert r.returncode == 1 and "disabled" in r.stdout, r.stdout
    r = g.cli("directory", "auth", "alice@example.org", input="\n", check=False)
    assert r.returncode == 1, r.stdout
    r = g.cli("directory", "auth", "bob", input="bob pw\n", check=False)
    # bob without a domain: no "*" section, so the store's users, where there is no bob.
    assert r.returncode == 1 and "source:   store" in r.stdout, r.stdout


def test_config_errors_name_the_key(tmp_path, slapd):
    g = Gateway(tmp_path / "gw", extra_config=directory_config(tmp_path, slapd).replace(
        'base_dn = "dc=example,dc=org"', 'base_dn = ""'))
    r = g.cli("check-config", check=False)
    assert r.returncode == 2 and "key `base_dn`" in r.stderr, r.stderr


CALLOUT = """
[directory.downstream]
type = "callout"
connect_timeout_secs = 2
timeout_secs = 5
cache_ttl_secs = 300
negative_cache_ttl_secs = 300

[domain."example.net"]
recipients = "downstream"
"""


def test_callout_against_postfix(tmp_path):
    """The domain's own server is a real Postfix that knows alice@example.net only
    (relay_recipient_maps): its refusal is our 550 5.1.1 at RCPT, its acceptance our 250;
    answers are cached, so they hold while it is down, and a new question then is 451."""
    from peers.postfix import Postfix
    pf = Postfix(tmp_path / "pf", relayhost=f"[127.0.0.1]:{free_port()}", extra_main="""
relay_domains = example.net
relay_recipient_maps = inline:{alice@example.net=ok}
mynetworks = 127.0.0.2/32
smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject
""").start()
    g = Gateway(tmp_path / "gw", extra_config=CALLOUT)
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{pf.port}")
    g.start()
    try:
        replies = rcpt(g.smtp, "alice@example.net", "nobody@example.net")
        assert [c for c, _ in replies] == [250, 550], replies
        assert b"5.1.1" in replies[1][1]
        r = g.cli("directory", "test", "alice@example.net")
        assert "answer:   exists" in r.stdout and f"servers:  127.0.0.1:{pf.port}" in r.stdout, r.stdout
        r = g.cli("directory", "test", "nobody@example.net", check=False)
        assert r.returncode == 1 and "unknown" in r.stdout, r.stdout
        wait_for(lambda: "User unknown in relay recipient table" in pf.maillog(),
                 what="Postfix's own refusal in its log")
        # The probe sent no DATA: Postfix queued nothing.
        assert "message-id=" not in pf.maillog()
        pf.stop()
        pf = None
        # Found and unknown are both cached...
        assert [c for c, _ in rcpt(g.smtp, "alice@example.net", "nobody@example.net")] == [250, 550]
        # ...and a question the downstream cannot answer is a temporary failure.
        (code, text), = rcpt(g.smtp, "carol@example.net")
        assert code == 451 and b"4.4.3" in text, (code, text)
    finally:
        g.stop()
        if pf is not None:
            pf.stop()


def test_callout_downstream_down(tmp_path):
    g = Gateway(tmp_path / "gw", extra_config=CALLOUT)
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{free_port()}")
    g.start()
    try:
        (code, text), = rcpt(g.smtp, "alice@example.net")
        assert code == 451 and b"4.4.3" in text, (code, text)
        r = g.cli("directory", "test", "alice@example.net", check=False)
        assert r.returncode == 2 and "unavailable" in r.stdout, r.stdout
        assert "source:   downstream" in r.stdout and "servers:  127.0.0.1:" in r.stdout, r.stdout
    finally:
        g.stop()
