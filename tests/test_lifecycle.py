"""Signals a service manager sends: SIGTERM drains the gateway (no new connections, idle
sessions told 421 4.3.2, a transaction under way finished and its mail kept), within
`limits.shutdown_grace_secs`; SIGHUP reads the configuration file again (an invalid file
changes nothing, a new certificate is used by the next handshakes)."""

import signal
import smtplib
import socket
import ssl
import subprocess
import time

from conftest import Gateway, wait_for


def insecure_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def reply(f):
    """One SMTP reply (all its lines) from a socket file: (code, last line)."""
    while True:
        line = f.readline().decode()
        assert line, "connection closed before a reply"
        if line[3:4] != "-":
            return int(line[:3]), line.strip()


def open_session(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    f = s.makefile("rb")
    assert reply(f)[0] == 220
    s.sendall(b"EHLO client.test\r\n")
    assert reply(f)[0] == 250
    return s, f


def wait_exit(proc, timeout):
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway did not exit within {timeout} s of SIGTERM") from None


def gateway_with_grace(tmp_path, sink, grace):
    g = Gateway(tmp_path / "gw", extra_config=f"[limits]\nshutdown_grace_secs = {grace}\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    return g.start()


def half_a_message(port, subject):
    """A session inside DATA, half its body sent."""
    s, f = open_session(port)
    s.sendall(b"MAIL FROM:<a@outside.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    assert reply(f)[0] == 250 and reply(f)[0] == 250 and reply(f)[0] == 354
    s.sendall(b"Subject: " + subject + b"\r\n\r\nfirst half\r\n")
    return s, f


def test_sigterm_drains_and_keeps_a_transaction_under_way(tmp_path, sink):
    g = gateway_with_grace(tmp_path, sink, 20)
    try:
        idle, idle_f = open_session(g.smtp)
        busy, busy_f = half_a_message(g.smtp, b"in flight at SIGTERM")

        g.proc.send_signal(signal.SIGTERM)
        # The idle session is told at once why it ends.
        code, line = reply(idle_f)
        assert code == 421 and "4.3.2" in line, line
        # No new connection is taken.
        def refused():
            try:
                socket.create_connection(("127.0.0.1", g.smtp), timeout=2).close()
                return False
            except OSError:
                return True
        wait_for(refused, 5, "the SMTP port to refuse connections")
        assert g.proc.poll() is None, "the gateway exited with a transaction under way"

        # The transaction under way ends normally: its mail is accepted, then the session
        # is closed with 421.
        busy.sendall(b"second half\r\n.\r\n")
        code, line = reply(busy_f)
        assert code == 250, line
        code, line = reply(busy_f)
        assert code == 421 and "4.3.2" in line, line
        assert wait_exit(g.proc, 15) == 0
        g.proc = None
        log = g.log.read_text()
        assert "stopped taking mail" in log
    finally:
        g.stop()

    # The message acknowledged during the drain is delivered (now, or after a restart).
    g.start()
    try:
        files = sink.wait_count(1, timeout=30)
        body = files[0].read_bytes()
        assert b"first half" in body and b"second half" in body
    finally:
        g.stop()


def test_sigterm_ends_within_the_grace_when_a_client_stalls(tmp_path, sink):
    g = gateway_with_grace(tmp_path, sink, 2)
    try:
        stalled = half_a_message(g.smtp, b"never finished")  # open until the gateway exits
        started = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        assert wait_exit(g.proc, 10) == 0
        took = time.monotonic() - started
        assert 1.5 <= took < 8, f"exited {took:.1f} s after SIGTERM (grace 2 s)"
        g.proc = None
        assert "still open at the end of the shutdown grace" in g.log.read_text()
        # Nothing was acknowledged, so nothing is queued.
        assert g.queue_ids() == []
        stalled[0].close()
    finally:
        g.stop()


def served_certificate(port):
    """The DER certificate the gateway shows after STARTTLS."""
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.ehlo("client.test")
        s.starttls(context=insecure_tls())
        return s.sock.getpeercert(binary_form=True)


def pem_der(path):
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_sighup_reloads_the_certificate_and_refuses_an_invalid_file(tmp_path, pki):
    first_cert, first_key = pki.issue("gw.test")
    g = Gateway(tmp_path / "gw", extra_config=f'[tls]\ncert = "{first_cert}"\nkey = "{first_key}"\n')
    g.start()
    try:
        assert served_certificate(g.smtp) == pem_der(first_cert)
        original = g.config.read_text()

        # An invalid file: an error naming file, line and key; the gateway goes on as it was.
        g.config.write_text(original + "\n[delivery]\nconcurrency = \"many\"\n")
        g.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in g.log.read_text(), 10,
                 "the reload error in the log")
        line = next(l for l in g.log.read_text().splitlines() if "configuration not reloaded" in l)
        assert str(g.config) in line and "key `delivery.concurrency`" in line, line
        assert f"{g.config}:{len(original.splitlines()) + 3}" in line, line
        assert served_certificate(g.smtp) == pem_der(first_cert)

        # A renewed certificate under new names, and a key that needs a restart: the next
        # handshake shows the new certificate; the log names the key left for later.
        second_cert, second_key = pki.self_signed("gw.test")
        g.config.write_text(
            original.replace(str(first_cert), str(second_cert)).replace(str(first_key), str(second_key))
            + "\n[delivery]\nconcurrency = 7\n")
        g.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "take effect at the next start" in g.log.read_text(), 10,
                 "the reload in the log")
        line = next(l for l in g.log.read_text().splitlines() if "take effect at the next start" in l)
        assert "delivery.concurrency" in line and "tls." not in line, line
        assert served_certificate(g.smtp) == pem_der(second_cert)
        assert g.proc.poll() is None
    finally:
        g.stop()
