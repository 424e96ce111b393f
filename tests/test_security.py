"""Against the running gateway: the classic open-relay tricks must all be refused, and no
SMTP smuggling variant may end a message early or start a second one."""

import socket
import time

import pytest

from peers import Gateway

RELAY_TRICKS = [
    "victim@elsewhere.test",
    "victim%elsewhere.test@example.com",
    "elsewhere.test!victim@example.com",
    '"victim@elsewhere.test"@example.com',
    "victim@elsewhere.test@example.com",
    "@example.com:victim@elsewhere.test",
    "@elsewhere.test,@example.com:victim@elsewhere.test",
    "victim@example.com.",
    "victim@example.com.elsewhere.test",
    "victim@[127.0.0.1]",
    "victim@[IPv6:::1]",
    "victim@EXAMPLE.COM.elsewhere.test",
    "victim@exаmple.com",  # Cyrillic а
    "victim@ｅｘａｍｐｌｅ.com",  # full-width letters
    "victim@example.com@",
    "victim@elsewhere.test%example.com",
    "<victim@elsewhere.test>",
]


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.reply()[0] == 220

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return (0, b"".join(lines))
            lines.append(line)
            if line[3:4] != b"-":
                return (int(line[:3]), b"".join(lines))

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_open_relay_trick_is_refused(gateway, sink, rcpt):
    c = Client(gateway.smtp)
    c.cmd("EHLO attacker.test")
    assert c.cmd("MAIL FROM:<spammer@attacker.test>")[0] == 250
    code, text = c.cmd(f"RCPT TO:<{rcpt}>" if not rcpt.startswith("<") else f"RCPT TO:{rcpt}")
    assert code >= 500, f"{rcpt} accepted: {text!r}"
    code, _ = c.cmd("DATA")
    assert code in (503, 554)
    c.close()
    time.sleep(0.3)
    assert sink.files() == []


def test_source_route_to_our_domain_is_not_relaying(gateway, sink):
    # RFC 5321 §4.1.1.3: source routes are ignored; what is left is our own domain.
    c = Client(gateway.smtp)
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<x@outside.test>")
    code, _ = c.cmd("RCPT TO:<@elsewhere.test:bob@example.com>")
    assert code == 250
    c.close()


SMUGGLING = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n\x00.\r\n",
]


@pytest.mark.parametrize("terminator", SMUGGLING, ids=[repr(t) for t in SMUGGLING])
def test_smuggling_variant_never_splits_a_message(gateway, sink, terminator):
    c = Client(gateway.smtp)
    c.cmd("EHLO c.test")
    assert c.cmd("MAIL FROM:<x@outside.test>")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    smuggled = (b"Subject: outer\r\n\r\nfirst part" + terminator +
                b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
    c.sock.sendall(smuggled)
    code, text = c.reply()
    if terminator == b"\r\n\x00.\r\n":
        # A NUL is not a line ending: the whole thing is one (odd) message.
        assert code == 250, text
        c.cmd("QUIT")
        sink.wait_count(1)
        time.sleep(0.5)
        assert len(sink.files()) == 1
        return
    assert code == 521 and b"5.5.2" in text, text
    # The connection is closed: nothing after the bare line ending was taken as a command.
    assert c.reply()[0] == 0
    c.close()
    time.sleep(0.5)
    assert sink.files() == []
    assert gateway.queue_ids() == []


def test_busy_connection_still_ends_at_the_session_limit(tmp_path):
    """A client that keeps talking just inside the command timeout cannot keep its
    connection slot for ever."""
    g = Gateway(tmp_path / "gw", "[limits]\nsession_timeout_secs = 2\ncommand_timeout_secs = 60\n").start()
    try:
        with socket.create_connection(("127.0.0.1", g.smtp), timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"220")
            started = time.monotonic()
            last = b""
            while time.monotonic() - started < 8:
                try:
                    s.sendall(b"NOOP\r\n")
                except OSError:
                    break
                line = f.readline()
                if not line:
                    break
                last = line
                if line.startswith(b"421"):
                    break
                time.sleep(0.3)
            assert last.startswith(b"421 4.4.2") and b"time limit" in last, last
            assert 1.5 < time.monotonic() - started < 5
    finally:
        g.stop()


def test_connection_and_message_rates_per_client(tmp_path, sink):
    """Per-client rate limits: connections per minute refused with 421 4.7.0, messages
    per hour with 450 4.7.1 at MAIL; both temporary, so a real sender retries later."""
    import smtplib
    g = Gateway(tmp_path / "gw", "[limits]\nmax_connection_rate_per_ip = 5\nmax_message_rate_per_client = 2\n"
                                 "[greylist]\nmode = \"never\"\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    # The windows are fixed and aligned to the clock (minutes, hours): start well inside
    # one so that a window boundary cannot reset the counts halfway through.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)
    g.start()
    try:
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            s.ehlo("client.test")
            for i in range(2):
                s.sendmail("a@outside.test", ["bob@example.com"], b"Subject: r\r\n\r\nx\r\n")
            code, text = s.mail("a@outside.test")
            assert (code, text[:5]) == (450, b"4.7.1"), (code, text)
        # Five a minute: the start-up probes of two ports and the session above took
        # three, two more fit, the next one is refused.
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", g.smtp), timeout=5) as c:
                assert c.makefile("rb").readline().startswith(b"220")
        with socket.create_connection(("127.0.0.1", g.smtp), timeout=5) as c:
            line = c.makefile("rb").readline()
            assert line.startswith(b"421 4.7.0"), line
        sink.wait_count(2)
    finally:
        g.stop()
