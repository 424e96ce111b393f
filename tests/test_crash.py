"""kill -9 with mail in flight: every message the gateway acknowledged (250 after DATA)
arrives after a restart, whether it was queued for a downstream that was down or being
delivered at the moment of the kill. Duplicates are allowed (at-least-once)."""

import smtplib
import threading

from peers import BIN, Gateway, Sink, free_port, wait_for


def blast(port, prefix, count, threads, acked, stop):
    def worker(n):
        for i in range(count):
            if stop.is_set():
                return
            subject = f"{prefix}-{n}-{i}"
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                    s.ehlo("c.test")
                    code, _ = s.docmd("MAIL", "FROM:<x@outside.test>")
                    assert code == 250
                    code, _ = s.docmd("RCPT", "TO:<bob@example.com>")
                    assert code == 250
                    code, _ = s.data(f"Subject: {subject}\r\n\r\n{'x' * 2000}\r\n".encode())
                    if code == 250:
                        acked.add(subject)
            except (OSError, smtplib.SMTPException):
                # The gateway died under us: this message was not acknowledged.
                if stop.is_set():
                    return

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    return ts


def received_subjects(sink):
    return {m["Subject"] for m in sink.messages()}


def test_kill9_loses_no_acknowledged_message(tmp_path):
    sink_port = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 1\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink_port}")
    sink = Sink(tmp_path / "sink", port=sink_port)
    g.start()
    try:
        # Round 1: the downstream is down, everything piles up in the queue.
        acked, stop = set(), threading.Event()
        ts = blast(g.smtp, "queued", 40, 6, acked, stop)
        wait_for(lambda: len(acked) >= 60, timeout=60, what="60 acknowledged messages")
        g.kill9()
        stop.set()
        for t in ts:
            t.join()
        first = set(acked)

        # Round 2: downstream up; kill again while deliveries and receptions run.
        sink.start()
        g.start()
        acked2, stop2 = set(), threading.Event()
        ts = blast(g.smtp, "live", 40, 6, acked2, stop2)
        wait_for(lambda: len(acked2) >= 40 and len(sink.files()) >= 20, timeout=60,
                 what="reception and delivery under way")
        g.kill9()
        stop2.set()
        for t in ts:
            t.join()

        g.start()
        everything = first | acked2
        wait_for(lambda: everything <= received_subjects(sink), timeout=90,
                 what=f"all {len(everything)} acknowledged messages delivered "
                      f"(missing {len(everything - received_subjects(sink))})")
        wait_for(lambda: g.queue_ids() == [], timeout=30, what="queue drained")
        assert len(first) >= 60 and len(acked2) >= 40
    finally:
        g.stop()
        sink.stop()


def test_restart_rebuilds_queue_from_spool(tmp_path):
    sink_port = free_port()
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 1\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink_port}")
    g.start()
    try:
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            for i in range(3):
                s.sendmail("x@outside.test", ["bob@example.com"], f"Subject: r{i}\r\n\r\nx\r\n".encode())
        wait_for(lambda: len(g.queue_ids()) == 3, what="three queued")
        g.stop()
        sink = Sink(tmp_path / "sink", port=sink_port).start()
        try:
            g.start()
            sink.wait_count(3)
            assert received_subjects(sink) == {"r0", "r1", "r2"}
            assert "queue loaded from spool messages=3" in g.log_text()
        finally:
            sink.stop()
    finally:
        g.stop()


def test_a_second_gateway_on_the_same_spool_is_refused(tmp_path):
    import subprocess
    g = Gateway(tmp_path / "gw")
    g.start()
    try:
        r = subprocess.run([str(BIN), "--config", str(g.config), "serve"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert "in use by another portcullis serve" in r.stderr, r.stderr
        # The first one still works.
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            assert s.noop()[0] == 250
    finally:
        g.stop()
