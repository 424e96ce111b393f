"""Connection and message checks end to end against real peers: clamd (Debian's
clamav-daemon with our own EICAR signature) refuses infected mail in every wrapping and
a stopped clamd gives a temporary failure with nothing lost; a DNSBL served by a DNS
server the test runs on loopback; greylisting refuses a first try and lets the retry in."""

import base64
import functools
import io
import json
import time
import zipfile

import pytest

from peers import Gateway, dns_server, free_port, send, wait_for
from peers.clamd import EICAR, Clamd


@pytest.fixture(scope="module")
def clamd(tmp_path_factory):
    c = Clamd(tmp_path_factory.mktemp("clamd"))
    yield c
    c.stop()


def zipped(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def mail(subject, attachment=None, body=b"hello\r\n"):
    head = (f"From: a@outside.test\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@outside.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n").encode()
    if attachment is None:
        return head + b"Content-Type: text/plain\r\n\r\n" + body
    name, data = attachment
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (head + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
            b"Content-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n"
            + f'Content-Type: application/octet-stream; name="{name}"\r\n'
              f'Content-Disposition: attachment; filename="{name}"\r\n'.encode()
            + b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--B--\r\n")


# The mail of these tests comes in from outside; the tests look at the replies.
send_inbound = functools.partial(send, sender="a@outside.test", helo="mail.outside.test", check=False)


def test_clamd_refuses_viruses_in_every_wrapping(tmp_path, sink, clamd):
    g = Gateway(tmp_path / "gw", f'[antivirus]\nclamd = ["127.0.0.1:{clamd.port}"]\ntimeout = 10\n')
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        cases = {
            "plain": mail("plain", body=EICAR + b"\r\n"),
            "attached": mail("attached", ("eicar.com", EICAR)),
            "zip": mail("zip", ("eicar.zip", zipped("eicar.com", EICAR))),
            "zipzip": mail("zipzip", ("outer.zip", zipped("inner.zip", zipped("eicar.com", EICAR)))),
        }
        for name, data in cases.items():
            code, text = send_inbound(g.smtp, message=data)
            assert (code, text[:5]) == (554, b"5.7.1"), (name, code, text)
        assert send_inbound(g.smtp, message=mail("clean"))[0] == 250
        sink.wait_count(1)
        assert [m["Subject"] for m in sink.messages()] == ["clean"]
        logged = json.loads(g.cli("log", "search", "--json").stdout)
        zz = next(m for m in logged if m["subject"] == "zipzip")
        assert zz["verdict"] == "reject" and zz["rule"] == "default: virus"
        assert "Eicar-Test-Signature" in zz["findings"]
    finally:
        g.stop()


def test_clamd_down_is_a_temporary_failure(tmp_path, sink):
    dead = free_port()
    g = Gateway(tmp_path / "gw", f'[antivirus]\nclamd = ["127.0.0.1:{dead}"]\ntimeout = 5\n')
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        code, text = send_inbound(g.smtp, message=mail("waiting"))
        assert (code, text[:5]) == (451, b"4.7.0"), (code, text)
        assert g.queue_ids() == [] and sink.files() == []
    finally:
        g.stop()
    # Fail-open by setting: accepted unscanned, and the log says so.
    g2 = Gateway(tmp_path / "gw2", f'[antivirus]\nclamd = ["127.0.0.1:{dead}"]\ntimeout = 5\nfail_open = true\n')
    g2.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g2.start()
    try:
        assert send_inbound(g2.smtp, message=mail("unscanned"))[0] == 250
        sink.wait_count(1)
        logged = json.loads(g2.cli("log", "search", "--json").stdout)
        assert "av.unscanned" in logged[0]["findings"]
    finally:
        g2.stop()


def test_dnsbl_listing_scores_and_a_rule_refuses(tmp_path, sink):
    zone = """
1.0.0.127.bl.test.    60 IN A 127.0.0.2
1.0.0.127.bl.test.    60 IN TXT "listed for testing"
1.0.0.127.refusing.test. 60 IN A 127.255.255.254
"""
    with dns_server(zone) as dns_port:
        g = Gateway(tmp_path / "gw",
                    f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\ntimeout_secs = 2\n'
                    '[fcrdns]\nenabled = false\n[greylist]\nmode = "never"\n'
                    '[[dnsbl.zones]]\nzone = "bl.test"\nweight = 2.5\n'
                    '[[dnsbl.zones]]\nzone = "refusing.test"\nweight = 9\n')
        g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
        f = tmp_path / "r.toml"
        f.write_text('[[rule]]\nname = "listed senders"\nwhen = [{ finding = "dnsbl.bl.test" }, '
                     '{ header = "subject", matches = "^refuse" }]\n'
                     'actions = [{ action = "reject", code = 554, status = "5.7.1", text = "Client listed" }]\n')
        g.cli("rule", "add", str(f))
        g.start()
        try:
            assert send_inbound(g.smtp, message=mail("refuse me")) == (554, b"5.7.1 Client listed")
            sent = send_inbound(g.smtp, message=mail("scored"))
            assert sent[0] == 250, sent
            (msg,) = sink.wait_count(1) and sink.messages()
            # The listing's weight is in the score; the refusing list's answer is not.
            assert "dnsbl.bl.test=2.50" in msg["X-Spam-Status"], msg["X-Spam-Status"]
            assert "refusing" not in msg["X-Spam-Status"]
            assert "score=2.50" in msg["X-Spam-Status"]
        finally:
            g.stop()


def test_greylisting_defers_first_try_and_passes_retry(tmp_path, sink):
    g = Gateway(tmp_path / "gw", "[greylist]\nmode = \"always\"\ndelay_secs = 2\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        code, text = send_inbound(g.smtp, message=mail("grey"))
        assert (code, text[:5]) == (451, b"4.7.1"), (code, text)
        assert b"Greylisted" in text
        # Too early: still deferred.
        assert send_inbound(g.smtp, message=mail("grey"))[0] == 451
        time.sleep(2.5)
        assert send_inbound(g.smtp, message=mail("grey"))[0] == 250
        # Known now: no more waiting for this triplet.
        assert send_inbound(g.smtp, message=mail("grey again"))[0] == 250
        sink.wait_count(2)
        # Another sender from the same client waits again.
        assert send_inbound(g.smtp, message=mail("new"), sender="other@outside.test")[0] == 451
    finally:
        g.stop()


def test_greylisting_suspicious_mode_delays_only_doubtful_mail(tmp_path, sink):
    zone = "1.0.0.127.bl.test. 60 IN A 127.0.0.2\n"
    with dns_server(zone) as dns_port:
        base = (f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\ntimeout_secs = 2\n'
                '[fcrdns]\nenabled = false\n[greylist]\ndelay_secs = 1\n')
        clean = Gateway(tmp_path / "clean", base)
        clean.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
        clean.start()
        try:
            # Not listed: not doubtful, not delayed.
            sent = send_inbound(clean.smtp,
                                message=mail("clean", body=b"Hello Bob, lunch at noon?\r\n"))
            assert sent[0] == 250, sent
            sink.wait_count(1)
        finally:
            clean.stop()
        listed = Gateway(tmp_path / "listed", base + '[[dnsbl.zones]]\nzone = "bl.test"\nweight = 4\n')
        listed.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
        listed.start()
        try:
            code, text = send_inbound(listed.smtp, message=mail("doubtful"))
            assert (code, text[:5]) == (451, b"4.7.1"), (code, text)
            time.sleep(1.5)
            assert send_inbound(listed.smtp, message=mail("doubtful"))[0] == 250
            sink.wait_count(2)
        finally:
            listed.stop()


def test_external_engine_down_fails_open_by_default_and_closed_by_setting(tmp_path, sink):
    dead = free_port()
    g = Gateway(tmp_path / "open", f'[external]\nrspamd = "127.0.0.1:{dead}"\ntimeout_ms = 2000\n'
                                   '[greylist]\nmode = "never"\n')
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        assert send_inbound(g.smtp, message=mail("open"))[0] == 250
        sink.wait_count(1)
    finally:
        g.stop()
    g = Gateway(tmp_path / "closed", f'[external]\nrspamd = "127.0.0.1:{dead}"\ntimeout_ms = 2000\nfail_open = false\n')
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        code, text = send_inbound(g.smtp, message=mail("closed"))
        assert (code, text[:5]) == (451, b"4.7.0"), (code, text)
        assert g.queue_ids() == []
    finally:
        g.stop()


def test_greylisting_changed_in_the_store_reaches_the_running_gateway(tmp_path, sink):
    """`portcullis settings set` keeps a key over the file's value and the running gateway
    applies it within seconds, without a restart; `reset` gives the file's value back.
    A value that does not fit is refused with the key and the reason, and changes nothing."""
    g = Gateway(tmp_path / "gw", "[greylist]\nmode = \"never\"\ndelay_secs = 2\n[fcrdns]\nenabled = false\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        assert send_inbound(g.smtp, message=mail("before"))[0] == 250
        g.cli("settings", "set", "greylist.mode", "always")
        listed = json.loads(g.cli("settings", "list", "--json").stdout)
        mode = [s for s in listed["greylist"] if s["name"] == "mode"][0]
        assert mode["value"] == "always" and mode["changed_by"], mode
        # The policy reloads every two seconds.
        wait_for(lambda: send_inbound(g.smtp, message=mail("grey"), sender="new@outside.test")[0] == 451,
                 timeout=10, what="greylisting in force")

        bad = g.cli("settings", "set", "greylist.delay_secs", "99999", check=False)
        assert bad.returncode != 0 and "delay_secs" in bad.stderr, bad.stderr
        unknown = g.cli("settings", "set", "greylist.delay", "5", check=False)
        assert unknown.returncode != 0 and "delay_secs" in unknown.stderr, unknown.stderr
        assert "delay_secs = 2\n" in g.cli("settings", "list").stdout

        g.cli("settings", "reset", "greylist.mode")
        assert "greylist.mode = never\n" in g.cli("settings", "list").stdout
        wait_for(lambda: send_inbound(g.smtp, message=mail("after"), sender="other@outside.test")[0] == 250,
                 timeout=10, what="greylisting off again")
        again = g.cli("settings", "reset", "greylist.mode", check=False)
        assert again.returncode != 0 and "no changed setting greylist.mode" in again.stderr, again.stderr
        audit = g.cli("audit", "list").stdout
        assert "settings.set" in audit and "settings.reset" in audit, audit
    finally:
        g.stop()
