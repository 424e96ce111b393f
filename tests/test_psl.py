"""DMARC organizational domains by the public suffix list (RFC 7489 §3.2), and a list
replaced at run time.

From: alice@sub.org.test, signed by d=org.test; only sub.org.test publishes a DMARC
policy (p=reject), org.test none, and SPF fails. By the suffix list (where `test` is a
suffix) the organizational domain of both names is org.test, so the signature aligns in
relaxed mode and the message passes. By the DNS tree walk of DMARCbis the organizational
domain of sub.org.test is sub.org.test itself (the topmost record found), nothing aligns,
and the message is refused. Then a list that names org.test as a public suffix is
installed in the running gateway, and the same message is refused.
"""

import dkim

from peers import Gateway, dns_server, send
from peers.https import PolicyServer
from peers.pki import Pki

LIST_WITH_ORG_TEST = """// a test copy of the public suffix list
// ===BEGIN ICANN DOMAINS===
com
test
org.test
// ===END ICANN DOMAINS===
"""


def zone(public):
    return f"""
sub.org.test.                 60 IN TXT "v=spf1 -all"
_dmarc.sub.org.test.          60 IN TXT "v=DMARC1; p=reject"
sel._domainkey.org.test.      60 IN TXT "v=DKIM1; k=rsa; p={public}"
psl.lists.test.               60 IN A   127.0.0.1
"""


def gateway(tmp_path, sink, dns_port, extra=""):
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\ntimeout_secs = 1\n"
                                 f"[auth]\nenabled = true\n{extra}")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    return g


def signed(key, subject):
    msg = (f"From: alice@sub.org.test\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@sub.org.test>\r\n\r\nhello\r\n").encode()
    return dkim.sign(msg, b"sel", b"org.test", key, include_headers=[b"from", b"to", b"subject"]) + msg


def test_relaxed_alignment_by_the_suffix_list_then_by_a_new_list(tmp_path, sink, dkim_key):
    with dns_server(zone(dkim_key[1])) as port:
        g = gateway(tmp_path, sink, port).start()
        try:
            code, text = send(g.smtp, "alice@sub.org.test", ["bob@example.com"],
                              message=signed(dkim_key[0], "built-in-list"), helo="mail.sub.org.test",
                              check=False)
            assert code == 250, (code, text)
            (msg,) = sink.wait_count(1) and sink.messages()
            ar = msg["Authentication-Results"]
            assert "dmarc=pass" in ar and "header.from=sub.org.test" in ar, ar
            assert "spf=fail" in ar, ar

            listfile = tmp_path / "list.dat"
            listfile.write_text(LIST_WITH_ORG_TEST)
            out = g.cli("psl", "update", "--from", str(listfile)).stdout
            assert "3 rules" in out and "the running gateway uses it now" in out, out
            assert "public suffix list reloaded" in g.log_text()

            code, text = send(g.smtp, "alice@sub.org.test", ["bob@example.com"],
                              message=signed(dkim_key[0], "new-list"), helo="mail.sub.org.test",
                              check=False)
            assert code == 550 and text.startswith(b"5.7.1") and b"DMARC" in text, (code, text)
            assert len(sink.files()) == 1

            shown = g.cli("psl", "show", "sub.org.test", "a.example.co.uk").stdout
            assert "3 rules" in shown, shown
            assert "sub.org.test\tsub.org.test" in shown, shown
            assert "a.example.co.uk\tco.uk" in shown, shown  # this copy lists no co.uk
        finally:
            g.stop()


def test_tree_walk_when_configured(tmp_path, sink, dkim_key):
    with dns_server(zone(dkim_key[1])) as port:
        g = gateway(tmp_path, sink, port, 'dmarc_org_domain = "tree-walk"\n').start()
        try:
            code, text = send(g.smtp, "alice@sub.org.test", ["bob@example.com"],
                              message=signed(dkim_key[0], "tree-walk"), helo="mail.sub.org.test",
                              check=False)
            assert code == 550 and text.startswith(b"5.7.1"), (code, text)
            assert sink.files() == []
        finally:
            g.stop()


def test_list_installed_at_start_and_fetched_over_https(tmp_path, sink, dkim_key):
    pki = Pki(tmp_path / "pki")
    cert, key = pki.issue("psl.lists.test")
    server = PolicyServer(cert, key, LIST_WITH_ORG_TEST)
    truncated = PolicyServer(cert, key, LIST_WITH_ORG_TEST.split("org.test")[0])
    try:
        with dns_server(zone(dkim_key[1])) as port:
            g = gateway(tmp_path, sink, port, f'[delivery]\nextra_ca_file = "{pki.ca}"\n')
            url = f"https://psl.lists.test:{server.port}/.well-known/mta-sts.txt"
            out = g.cli("psl", "update", "--url", url).stdout
            assert "3 rules" in out and "no gateway is running" in out, out
            installed = g.dir / "data" / "public_suffix_list.dat"
            assert installed.read_text() == LIST_WITH_ORG_TEST

            # A download cut short is refused and the installed copy stays.
            bad = f"https://psl.lists.test:{truncated.port}/.well-known/mta-sts.txt"
            r = g.cli("psl", "update", "--url", bad, check=False)
            assert r.returncode != 0 and "END ICANN DOMAINS" in r.stderr, r.stderr
            assert installed.read_text() == LIST_WITH_ORG_TEST

            # Read at start: org.test is a public suffix, so nothing aligns.
            g.start()
            try:
                assert "public suffix list loaded" in g.log_text()
                code, text = send(g.smtp, "alice@sub.org.test", ["bob@example.com"],
                                  message=signed(dkim_key[0], "list-at-start"), helo="mail.sub.org.test",
                                  check=False)
                assert code == 550, (code, text)
            finally:
                g.stop()
    finally:
        server.stop()
        truncated.stop()


def test_plain_http_is_refused(tmp_path, sink):
    g = Gateway(tmp_path / "gw")
    r = g.cli("psl", "update", "--url", "http://127.0.0.1:9/list.dat", check=False)
    assert r.returncode != 0 and "http" in r.stderr.lower(), r.stderr
    assert not (g.dir / "data" / "public_suffix_list.dat").exists()
    # Without a list file the built-in list is used: it knows co.uk.
    shown = g.cli("psl", "show", "mail.example.co.uk").stdout
    assert "embedded" in shown and "mail.example.co.uk\texample.co.uk" in shown, shown
