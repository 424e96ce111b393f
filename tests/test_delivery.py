"""Delivery: a downstream that is down and then up, queue commands, bounces (DSN) and
their absence for the null sender, queue lifetime, and outbound delivery by MX through a
DNS server run by the test on loopback (MX, implicit MX, null MX)."""

import os
import smtplib
import subprocess
import threading
import json
import time

import pytest

from peers import BIN, Gateway, Sink, dns_server, fake_smtp, free_port, send, wait_for


@pytest.fixture
def dns():
    with dns_server("""
outside.test.        60 IN MX 10 mx1.outside.test.
mx1.outside.test.    60 IN A  127.0.0.1
implicit.test.       60 IN A  127.0.0.1
nullmx.test.         60 IN MX 0 .
""") as port:
        yield port


def test_downstream_down_then_up(tmp_path):
    port = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 60\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{port}")
    g.start()
    try:
        send(g.smtp, "x@outside.test", ["bob@example.com"], "waits for the server")
        ids = wait_for(lambda: g.queue_ids(), what="message in queue")
        listing = g.cli("queue", "list").stdout
        wait_for(lambda: "4.4.1" in g.cli("queue", "list").stdout or "4.4" in g.cli("queue", "list").stdout,
                 what="deferral reason in queue list")
        assert ids[0] in listing
        log = g.cli("log", "search", "--recipient", "bob@example.com").stdout
        assert "deferred" in log, log
        sink = Sink(tmp_path / "sink", port=port).start()
        try:
            out = g.cli("queue", "flush").stdout
            assert "1" in out
            sink.wait_count(1)
            wait_for(lambda: g.queue_ids() == [], what="empty queue")
            log = g.cli("log", "search", "--recipient", "bob@example.com").stdout
            assert "delivered" in log, log
        finally:
            sink.stop()
    finally:
        g.stop()


def test_retry_one_message_now(tmp_path):
    port = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 600\nmax_backoff_secs = 600\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{port}")
    g.start()
    sink = Sink(tmp_path / "sink", port=port)
    try:
        send(g.smtp, "x@outside.test", ["bob@example.com"], "first")
        send(g.smtp, "x@outside.test", ["carol@example.com"], "second")
        ids = wait_for(lambda: len(g.queue_ids()) == 2 and g.queue_ids(), what="two queued")
        wait_for(lambda: g.cli("queue", "list").stdout.count("4.4") == 2, what="both deferred")
        first = next(i for i in ids if "bob@example.com" in g.cli("queue", "show", i).stdout)
        sink.start()
        # Only the one asked for goes now; the other waits for its next attempt.
        assert first in g.cli("queue", "retry", first).stdout
        (msg,) = sink.wait_count(1) and sink.messages()
        assert msg["Subject"] == "first"
        time.sleep(1.5)
        assert len(sink.files()) == 1 and len(g.queue_ids()) == 1
        # A held message is released, not retried; an unknown one is not there.
        other = g.queue_ids()[0]
        g.cli("queue", "hold", other)
        held = g.cli("queue", "retry", other, check=False)
        assert held.returncode != 0 and "held" in held.stderr and "release it" in held.stderr, held.stderr
        gone = g.cli("queue", "retry", first, check=False)
        assert gone.returncode != 0 and "no message" in gone.stderr
        audit = json.loads(g.cli("audit", "list", "--action", "queue.retry", "--json").stdout)
        assert [a["target"] for a in audit] == [first]
    finally:
        sink.stop()
        g.stop()


def test_hold_release_delete(tmp_path):
    port = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 60\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{port}")
    g.start()
    sink = Sink(tmp_path / "sink", port=port)
    try:
        send(g.smtp, "x@outside.test", ["bob@example.com"], "one")
        send(g.smtp, "x@outside.test", ["carol@example.com"], "two")
        ids = wait_for(lambda: len(g.queue_ids()) == 2 and g.queue_ids(), what="two queued")
        assert g.cli("queue", "hold", ids[0]).returncode == 0
        assert "HELD" in g.cli("queue", "list").stdout
        assert g.cli("queue", "delete", ids[1]).returncode == 0
        assert g.cli("queue", "delete", ids[1], check=False).returncode == 1
        assert g.cli("queue", "show", ids[0]).stdout.count("bob@example.com") >= 1
        sink.start()
        g.cli("queue", "flush")
        time.sleep(1.5)
        assert sink.files() == [], "a held message was delivered"
        g.cli("queue", "release", ids[0])
        (msg,) = sink.wait_count(1) and sink.messages()
        assert msg["Subject"] == "one"
        wait_for(lambda: g.queue_ids() == [], what="empty queue")
    finally:
        sink.stop()
        g.stop()


def test_permanent_failure_bounces_to_sender_but_never_to_null_sender(tmp_path, sink):
    # example.com's server refuses every recipient; example.net's mail goes to the sink.
    reject_port = free_port()
    refuser = fake_smtp.start(reject_port, "--refuse-rcpt", "550 5.1.1 no such user here")
    try:
        g = Gateway(tmp_path / "gw")
        g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{reject_port}")
        g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
        g.start()
        try:
            send(g.smtp, "sender@example.net", ["nobody@example.com"], "will bounce")
            (dsn,) = sink.wait_count(1) and sink.messages()
            assert dsn["X-Rcpt-Args"].startswith("<sender@example.net>")
            assert dsn["X-Mail-Args"].startswith("<>")
            assert dsn["Auto-Submitted"] == "auto-replied"
            text = dsn.as_string()
            assert "Final-Recipient: rfc822; nobody@example.com" in text
            assert "Status: 5.1.1" in text
            assert "Subject: will bounce" in text, "the original is returned"
            # The null sender never gets a bounce.
            send(g.smtp, "", ["nobody@example.com"], "bounce of a bounce")
            wait_for(lambda: g.cli("log", "search", "--recipient", "nobody@example.com")
                     .stdout.count("bounced") == 2, what="second bounce logged")
            wait_for(lambda: g.queue_ids() == [], what="queue empty")
            time.sleep(1)
            assert len(sink.files()) == 1
        finally:
            g.stop()
    finally:
        refuser.kill()


def test_queue_lifetime_expiry_bounces(tmp_path, sink):
    dead = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 1\n"
                                 "max_lifetime_secs = 3\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{dead}")
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        send(g.smtp, "sender@example.net", ["bob@example.com"], "never arrives")
        (dsn,) = sink.wait_count(1, timeout=30) and sink.messages()
        text = dsn.as_string()
        assert "Action: failed" in text and "5.4.7" in text, text
        wait_for(lambda: g.queue_ids() == [], what="expired message removed")
    finally:
        g.stop()


def test_delay_dsn_when_notify_delay(tmp_path, sink):
    dead = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 60\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{dead}")
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        send(g.smtp, "sender@example.net", ["bob@example.com"], "slow", body="x\r\n", helo="c.test",
             rcpt_options=["NOTIFY=DELAY,FAILURE"])
        (dsn,) = sink.wait_count(1) and sink.messages()
        assert "Action: delayed" in dsn.as_string()
        assert len(g.queue_ids()) == 1, "a delayed message stays queued"
    finally:
        g.stop()


def gateway_with_dns(tmp_path, dns, sink, extra=""):
    g = Gateway(tmp_path / "gw", f"[dns]\nnameservers = [\"127.0.0.1:{dns}\"]\ntimeout_secs = 2\n"
                                 f"[delivery]\nmx_port = {sink.port}\n" + extra)
    g.cli("network", "add", "127.0.0.0/8", "--comment", "test clients")
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
    return g.start()


def test_outbound_by_mx_and_implicit_mx(tmp_path, dns, sink):
    g = gateway_with_dns(tmp_path, dns, sink)
    try:
        send(g.smtp, "me@example.net", ["friend@outside.test"], "by mx")
        send(g.smtp, "me@example.net", ["friend@implicit.test"], "by implicit mx")
        sink.wait_count(2)
        subjects = sorted(m["Subject"] for m in sink.messages())
        assert subjects == ["by implicit mx", "by mx"]
        log = g.cli("log", "search", "--recipient", "friend@outside.test").stdout
        assert "outbound" in log and "mx1.outside.test" in log, log
    finally:
        g.stop()


def test_null_mx_and_nxdomain_bounce(tmp_path, dns, sink):
    g = gateway_with_dns(tmp_path, dns, sink)
    try:
        send(g.smtp, "me@example.net", ["a@nullmx.test"], "to null mx")
        send(g.smtp, "me@example.net", ["b@no-such-domain.test"], "to nowhere")
        sink.wait_count(2)
        texts = [m.as_string() for m in sink.messages()]
        assert any("5.1.10" in t and "a@nullmx.test" in t for t in texts), texts
        assert any("5.1.2" in t and "b@no-such-domain.test" in t for t in texts), texts
    finally:
        g.stop()


def test_internal_network_may_relay_outbound_others_may_not(tmp_path, dns, sink):
    g = gateway_with_dns(tmp_path, dns, sink)
    try:
        g.cli("network", "remove", "127.0.0.0/8")
        time.sleep(2.5)  # the policy snapshot is reloaded every 2 s
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            send(g.smtp, "me@example.net", ["friend@outside.test"], "denied")
        assert e.value.recipients["friend@outside.test"][0] == 554
    finally:
        g.stop()


def test_one_connection_carries_many_messages(tmp_path):
    port = free_port()
    counts = tmp_path / "counts"
    server = fake_smtp.start(port, "--count", str(counts))
    g = Gateway(tmp_path / "gw", "[delivery]\nconnection_idle_secs = 10\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{port}")
    g.start()
    # The harness's own readiness probe was one connection.
    probe = int(wait_for(lambda: counts.exists() and counts.read_text(), what="counts").split()[0])
    try:
        for i in range(5):
            send(g.smtp, "x@outside.test", ["bob@example.com"], f"m{i}")
            wait_for(lambda: counts.exists() and counts.read_text().split()[1] == str(i + 1),
                     what=f"message {i} delivered")
            # The connection goes back to the pool before the message leaves the queue.
            wait_for(lambda: g.queue_ids() == [], what="queue empty")
        connections, messages = map(int, counts.read_text().split())
        assert (connections - probe, messages) == (1, 5)
    finally:
        g.stop()
        server.kill()


def test_threaded_load_all_arrive(gateway, sink):
    errors = []

    def worker(n):
        try:
            for i in range(10):
                send(gateway.smtp, "x@outside.test", ["bob@example.com"], f"load {n}-{i}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sink.wait_count(50, timeout=60)
    assert len({m["Subject"] for m in sink.messages()}) == 50


def test_route_with_required_tls_and_auth(tmp_path, sink):
    # The downstream is a second Portcullis on its submission port, which insists on
    # STARTTLS and AUTH: the route must encrypt and authenticate to get through.
    down = Gateway(tmp_path / "down")
    down.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    down.cli("user", "add", "relay@example.com", input="relay password\n")
    down.start()
    # No pooled connections: the second half must log in again with the wrong password.
    up = Gateway(tmp_path / "up", "[delivery]\nconnection_idle_secs = 0\n")
    env = dict(os.environ, PORTCULLIS_ROUTE_PASSWORD="relay password")
    out = subprocess.run(
        [str(BIN), "--config", str(up.config), "domain", "add", "example.com",
         "--route", f"127.0.0.1:{down.submission}", "--tls", "encrypt", "--auth-user", "relay@example.com"],
        env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    up.start()
    try:
        send(up.smtp, "x@outside.test", ["bob@example.com"], "over tls with auth")
        (msg,) = sink.wait_count(1) and sink.messages()
        received = " ".join(msg.get_all("Received"))
        assert "with ESMTPSA" in received, received
        # Without the right password the downstream refuses, and mail waits (4xx), not bounces.
        env["PORTCULLIS_ROUTE_PASSWORD"] = "wrong"
        subprocess.run(
            [str(BIN), "--config", str(up.config), "domain", "add", "example.com",
             "--route", f"127.0.0.1:{down.submission}", "--tls", "encrypt", "--auth-user",
             "relay@example.com"], env=env, check=True, capture_output=True)
        time.sleep(2.5)
        send(up.smtp, "x@outside.test", ["bob@example.com"], "wrong password")
        wait_for(lambda: "535" in up.cli("queue", "list").stdout, what="AUTH failure in queue list")
        assert len(sink.files()) == 1
    finally:
        up.stop()
        down.stop()


def test_notify_success_to_a_hop_without_dsn_gets_a_relayed_notice(tmp_path, sink):
    # The fake next hop does not offer DSN, so the request ends with us (RFC 3461 §5.2.2).
    port = free_port()
    server = fake_smtp.start(port)
    g = Gateway(tmp_path / "gw")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{port}")
    g.cli("domain", "add", "example.net", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    try:
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            s.ehlo("c.test")
            s.mail("sender@example.net", ["RET=HDRS"])
            assert s.rcpt("bob@example.com", ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
            assert s.rcpt("carol@example.com")[0] == 250
            assert s.data(b"Subject: tell me again\r\n\r\nx\r\n")[0] == 250
        (dsn,) = sink.wait_count(1) and sink.messages()
        text = dsn.as_string()
        assert "Action: relayed" in text, text
        assert "Final-Recipient: rfc822; bob@example.com" in text
        assert "Final-Recipient: rfc822; carol@example.com" not in text
        assert dsn.get_content_type() == "multipart/report"
        time.sleep(1)
        assert len(sink.files()) == 1, "only the recipient that asked gets a notice"
    finally:
        g.stop()
        server.kill()


def test_queue_commands_do_not_disturb_mail_being_received(gateway, sink):
    # A body large enough to be spilled to spool/tmp is in flight while an admin runs
    # queue commands: the message must still be accepted.
    s = smtplib.SMTP("127.0.0.1", gateway.smtp, timeout=30)
    s.ehlo("c.test")
    s.mail("x@outside.test")
    s.rcpt("bob@example.com")
    code, _ = s.putcmd("DATA") or s.getreply()
    assert code == 354
    s.send(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1600)
    time.sleep(0.5)
    gateway.cli("queue", "list")
    gateway.cli("queue", "flush")
    s.send(b".\r\n")
    code, text = s.getreply()
    s.quit()
    assert code == 250, text
    sink.wait_count(1)
