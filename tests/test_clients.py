"""Real SMTP clients against the gateway: swaks, msmtp and Python's smtplib, over plain
SMTP, STARTTLS and implicit TLS, with AUTH, PIPELINING and BDAT."""

import smtplib
import socket
import ssl
import subprocess

from peers import Gateway, require, send, wait_for


def swaks(*args, timeout=30):
    r = subprocess.run([require("swaks"), "--hide-informational", *args],
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def insecure_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_swaks_inbound_is_relayed_with_received_header(gateway, sink):
    rc, out = swaks("--server", f"127.0.0.1:{gateway.smtp}", "--from", "x@outside.test",
                    "--to", "bob@example.com", "--header", "Subject: inbound one",
                    "--body", "hello there")
    assert rc == 0, out
    assert "250 2.0.0 Ok: queued as" in out
    (msg,) = sink.wait_count(1) and sink.messages()
    assert msg["Subject"] == "inbound one"
    received = msg.get_all("Received")
    assert any("by gw.test (Portcullis) with ESMTP" in r for r in received), received
    assert "hello there" in msg.get_payload()
    # The message log has the delivery with the downstream reply.
    out = gateway.cli("log", "search", "--recipient", "bob@example.com").stdout
    assert "delivered" in out and "250" in out, out


def test_relay_to_foreign_domain_is_refused(gateway):
    rc, out = swaks("--server", f"127.0.0.1:{gateway.smtp}", "--from", "x@outside.test",
                    "--to", "victim@elsewhere.test")
    assert rc != 0
    assert "554 5.7.1 Relay access denied" in out


def test_submission_requires_tls_then_auth(gateway, sink):
    port = gateway.submission
    rc, out = swaks("--server", f"127.0.0.1:{port}", "--from", "alice@example.com",
                    "--to", "carol@elsewhere.test")
    assert rc != 0 and "530 5.7.0" in out, out
    # Wrong password over STARTTLS.
    rc, out = swaks("--server", f"127.0.0.1:{port}", "--tls", "--auth", "PLAIN",
                    "--auth-user", "alice@example.com", "--auth-password", "wrong",
                    "--from", "alice@example.com", "--to", "bob@example.com")
    assert rc != 0 and "535 5.7.8" in out, out
    # Right password: outbound to the domain's own route works (sink).
    rc, out = swaks("--server", f"127.0.0.1:{port}", "--tls", "--auth", "LOGIN",
                    "--auth-user", "alice@example.com", "--auth-password", "correct horse",
                    "--from", "alice@example.com", "--to", "bob@example.com",
                    "--header", "Subject: submitted")
    assert rc == 0, out
    (msg,) = sink.wait_count(1) and sink.messages()
    assert any("with ESMTPSA" in r for r in msg.get_all("Received"))


def test_auth_never_offered_in_clear(gateway):
    with smtplib.SMTP("127.0.0.1", gateway.submission, timeout=10) as s:
        s.ehlo("client.test")
        assert not s.has_extn("auth")
        assert s.has_extn("starttls")
        code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGNvcnJlY3QgaG9yc2U=")
        assert code == 538
        s.starttls(context=insecure_tls())
        s.ehlo("client.test")
        assert "PLAIN" in s.esmtp_features["auth"]


def test_implicit_tls_submission_with_smtplib(gateway, sink):
    with smtplib.SMTP_SSL("127.0.0.1", gateway.submissions, context=insecure_tls(), timeout=10) as s:
        s.ehlo("client.test")
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                    "chunking", "dsn", "auth"):
            assert s.has_extn(ext), ext
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.login("alice@example.com", "correct horse")
        refused = s.sendmail("alice@example.com", ["bob@example.com"],
                             b"Subject: via 465\r\n\r\nbody\r\n")
        assert refused == {}
    sink.wait_count(1)


def test_msmtp_submission(gateway, sink, tmp_path):
    conf = tmp_path / "msmtprc"
    conf.write_text(f"""defaults
tls on
tls_starttls on
tls_certcheck off
account gw
host 127.0.0.1
port {gateway.submission}
auth plain
user alice@example.com
password correct horse
from alice@example.com
account default : gw
""")
    conf.chmod(0o600)
    r = subprocess.run([require("msmtp"), "-C", str(conf), "bob@example.com"],
                       input=b"Subject: from msmtp\r\n\r\nhi\r\n", capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (msg,) = sink.wait_count(1) and sink.messages()
    assert msg["Subject"] == "from msmtp"


def test_pipelined_transaction_and_per_recipient_replies(gateway, sink):
    s = socket.create_connection(("127.0.0.1", gateway.smtp), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    s.sendall(b"EHLO c.test\r\nMAIL FROM:<x@outside.test>\r\nRCPT TO:<a@example.com>\r\n"
              b"RCPT TO:<b@nowhere.test>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
    lines = []
    while not lines or not lines[-1].startswith(b"354"):
        lines.append(f.readline())
    finals = [l[:3] for l in lines if l[3:4] == b" "]
    assert finals == [b"250", b"250", b"250", b"554", b"250", b"354"], lines
    s.sendall(b"Subject: piped\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.0.0")
    assert f.readline().startswith(b"221")
    s.close()
    (msg,) = sink.wait_count(1) and sink.messages()
    assert msg["X-Rcpt-Args"] is not None
    body = msg.get_payload()
    assert ".leading dot" in body and "..leading" not in body


def test_bdat_chunking(gateway, sink):
    s = socket.create_connection(("127.0.0.1", gateway.smtp), timeout=10)
    f = s.makefile("rb")
    f.readline()
    part1 = b"Subject: chunked\r\n\r\nfirst "
    part2 = b"second\r\n"
    s.sendall(b"EHLO c.test\r\nMAIL FROM:<x@outside.test>\r\nRCPT TO:<bob@example.com>\r\n")
    s.sendall(b"BDAT %d\r\n" % len(part1) + part1)
    s.sendall(b"BDAT %d LAST\r\n" % len(part2) + part2)
    replies = []
    while len(replies) < 5:
        line = f.readline()
        if line[3:4] == b" ":
            replies.append(line)
    assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"250", b"250"], replies
    assert b"queued as" in replies[-1]
    s.close()
    (msg,) = sink.wait_count(1) and sink.messages()
    assert msg["Subject"] == "chunked"
    assert "first second" in msg.get_payload()


def test_size_limit_declared_and_streamed(tmp_path, sink):
    g = Gateway(tmp_path / "gw", extra_config="[limits]\nmax_message_size = 10000\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            s.ehlo("c.test")
            assert s.esmtp_features["size"] == "10000"
            code, msg = s.docmd("MAIL", "FROM:<x@outside.test> SIZE=20000")
            assert code == 552 and msg.startswith(b"5.3.4")
            s.rset()
            # No SIZE declared: the limit is enforced while the body streams in.
            assert s.mail("x@outside.test")[0] == 250
            assert s.rcpt("bob@example.com")[0] == 250
            code, msg = s.data(b"Subject: big\r\n\r\n" + b"a" * 20000)
            assert code == 552 and msg.startswith(b"5.3.4"), (code, msg)
        assert g.queue_ids() == []
    finally:
        g.stop()


def test_8bitmime_body_arrives_intact(gateway, sink):
    send(gateway.smtp, "x@outside.test", ["bob@example.com"], "cheese", body="Käse\r\n", helo="c.test",
         mail_options=["BODY=8BITMIME"])
    (path,) = sink.wait_count(1)
    assert "Käse".encode() in path.read_bytes()


def test_smtputf8_to_a_server_without_it_bounces_with_dsn(gateway, sink):
    # smtp-sink does not offer SMTPUTF8, so RFC 6531 says the message cannot be relayed:
    # the sender (in a routed domain, so the DSN reaches the sink) gets a 5.6.7 DSN.
    send(gateway.smtp, "sender@example.com", ["jörg@example.com"], "grüße", body="hi\r\n",
         helo="c.test", mail_options=["SMTPUTF8"])
    (dsn,) = sink.wait_count(1) and sink.messages()
    assert dsn["X-Mail-Args"].startswith("<>"), "a DSN goes out with the null sender"
    assert dsn.get_content_type() == "multipart/report"
    text = dsn.as_string()
    assert "5.6.7" in text and "Action: failed" in text
    out = gateway.cli("log", "search", "--recipient", "jörg@example.com").stdout
    assert "bounced" in out


def test_connection_limit_per_ip(tmp_path, sink):
    g = Gateway(tmp_path / "gw", extra_config="[limits]\nmax_connections_per_ip = 2\n")
    g.start()
    try:
        # The start-up probe's connection still counts until the gateway has seen it
        # close; on a loaded machine that takes a moment, so wait for two free slots.
        def two_slots():
            conns = [socket.create_connection(("127.0.0.1", g.smtp), timeout=5) for _ in range(2)]
            if all(c.makefile("rb").readline().startswith(b"220") for c in conns):
                return conns
            for c in conns:
                c.close()
            return None
        held = wait_for(two_slots, 10, "two free connection slots")
        third = socket.create_connection(("127.0.0.1", g.smtp), timeout=5)
        assert third.makefile("rb").readline().startswith(b"421 4.7.0")
        for h in held + [third]:
            h.close()
    finally:
        g.stop()


def test_message_log_is_written_before_shutdown(tmp_path, sink):
    """The message log gathers entries for a few milliseconds before it writes them; a
    gateway stopped right after a 250 still has the message in its log afterwards."""
    g = Gateway(tmp_path / "gw")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        send(g.smtp, "last@outside.test", ["bob@example.com"], "last", body="bye\r\n", helo=None)
    finally:
        g.stop()
    out = g.cli("log", "search", "--sender", "last@outside.test").stdout
    assert "last@outside.test" in out and "bob@example.com" in out, out
