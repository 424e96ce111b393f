"""A minimal SMTP server for the cases a real peer cannot be scripted into: refusing
every recipient with a chosen reply, and counting connections. Usage:
    fake_smtp.py PORT [--refuse-rcpt "550 5.1.1 text"] [--count FILE]
or from a test, start(PORT, *options): the running server's process, once it listens."""

import argparse
import os
import socket
import subprocess
import sys
import threading

lock = threading.Lock()
state = {"connections": 0, "messages": 0}
args = None


def start(port, *options):
    """Runs this server on 127.0.0.1:port in a process of its own; returns the process."""
    from peers.common import wait_port
    proc = subprocess.Popen([sys.executable, __file__, str(port), *options])
    wait_port(port, proc=proc)
    return proc


def record():
    if args.count:
        # Write and rename, so a reader never sees a half-written file.
        with open(args.count + ".tmp", "w") as f:
            f.write(f"{state['connections']} {state['messages']}\n")
        os.replace(args.count + ".tmp", args.count)


def serve(conn):
    f = conn.makefile("rb")
    conn.sendall(b"220 fake ESMTP\r\n")
    in_data = False
    for line in f:
        if in_data:
            if line == b".\r\n":
                in_data = False
                with lock:
                    state["messages"] += 1
                    record()
                conn.sendall(b"250 2.0.0 stored\r\n")
            continue
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            conn.sendall(b"250-fake\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n")
        elif verb == b"RCPT" and args.refuse_rcpt:
            conn.sendall(args.refuse_rcpt.encode() + b"\r\n")
        elif verb == b"DATA":
            in_data = True
            conn.sendall(b"354 go on\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 2.0.0 bye\r\n")
            break
        else:
            conn.sendall(b"250 2.0.0 ok\r\n")
    conn.close()


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--refuse-rcpt")
    ap.add_argument("--count")
    args = ap.parse_args()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(64)
    while True:
        c, _ = srv.accept()
        with lock:
            state["connections"] += 1
            record()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
