"""Postfix as a real peer on both sides: an internal Postfix relaying outbound through
Portcullis (STARTTLS, pipelining, many messages), and Postfix as the downstream server
that Portcullis delivers to."""


from peers import Gateway, send, wait_for
from peers.postfix import Postfix


def test_postfix_relays_through_portcullis(tmp_path, sink):
    g = Gateway(tmp_path / "gw")
    g.cli("network", "add", "127.0.0.0/8", "--comment", "internal Postfix")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    g.start()
    pf = Postfix(tmp_path / "pf", relayhost=f"[127.0.0.1]:{g.smtp}").start()
    try:
        for i in range(10):
            pf.sendmail("user@pf.test", "bob@example.com",
                        f"Subject: from postfix {i}\r\n\r\nbody {i}\r\n".encode())
        sink.wait_count(10, timeout=60)
        subjects = sorted(m["Subject"] for m in sink.messages())
        assert subjects == sorted(f"from postfix {i}" for i in range(10))
        log = pf.maillog()
        assert "status=sent" in log and "queued as" in log, log[-2000:]
        # Postfix used STARTTLS with our self-signed certificate (tls level may).
        assert "TLS connection established to 127.0.0.1" in log, log[-2000:]
        out = g.cli("log", "search", "--sender", "user@pf.test").stdout
        assert out.count("delivered") == 10, out
    finally:
        pf.stop()
        g.stop()


def test_portcullis_delivers_to_postfix_downstream(tmp_path, sink):
    # Postfix plays the domain's own mail server and relays on to the sink.
    pf = Postfix(tmp_path / "pf", relayhost=f"[127.0.0.1]:{sink.port}",
                 extra_main="relay_domains = example.com\nsmtpd_tls_security_level = none\n").start()
    g = Gateway(tmp_path / "gw")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{pf.port}")
    g.start()
    try:
        send(g.smtp, "x@outside.test", ["bob@example.com", "carol@example.com"], "through postfix",
             body="hi\r\n", helo="c.test")
        sink.wait_count(1, timeout=60)
        def carol_delivered():
            out = g.cli("log", "search", "--recipient", "carol@example.com").stdout
            return any("carol@example.com" in l and "delivered" in l and "queued as" in l
                       for l in out.splitlines())
        wait_for(carol_delivered, what="delivery logged with Postfix's reply")
        (msg,) = sink.messages()
        received = " ".join(msg.get_all("Received"))
        assert "Portcullis" in received and "pf.test" in received
    finally:
        g.stop()
        pf.stop()
