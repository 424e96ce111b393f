"""The command line acting on a running gateway through its REST API (`--url`): the real
binary against the real HTTPS console on loopback, with tokens made by `portcullis token
create`. Remote output is the local output; refusals (read-only token, wrong token, an
untrusted certificate, a command that only runs locally) are one line and a non-zero exit."""

import gzip
import json
import os
import re
import smtplib
import subprocess
import time

from conftest import BIN, Gateway, free_port, wait_port
from test_reports import DMARC_XML, report_message


def make_token(g, name, *extra):
    out = g.cli("token", "create", "--account", "admin", "--name", name, "--role", "admin", *extra).stdout
    return out.strip().splitlines()[-1]


def remote(g, tmp_path, *args, token=None, token_file=None, ca=True, url=None, input=None):
    """`portcullis --url ... ARGS` with no configuration of its own, from an empty directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
    if token is not None:
        env["PORTCULLIS_TOKEN"] = token
    cmd = [str(BIN), "--url", url or f"https://localhost:{g.https}"]
    if ca:
        cmd += ["--ca-file", str(g.dir / "data" / "tls" / "selfsigned.crt")]
    if token_file:
        cmd += ["--token-file", str(token_file)]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(cmd + list(args), input=input, capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cli_acts_on_a_remote_gateway(tmp_path):
    g = Gateway(tmp_path / "gw", extra_config="[delivery]\nmin_backoff_secs = 600\nmax_backoff_secs = 600\n")
    g.start()
    try:
        wait_port(g.https, proc=g.proc)
        admin = make_token(g, "remote")
        reader = make_token(g, "reader", "--read-only")
        run = lambda *a, **kw: remote(g, tmp_path, *a, token=kw.pop("token", admin), **kw)

        # Policy through the API, read back the same locally and remotely.
        dead = free_port()  # nothing listens: the message stays in the queue
        assert ok(run("domain", "add", "example.com", "--route", f"127.0.0.1:{dead}")) == "domain example.com added\n"
        assert ok(run("network", "add", "10.0.0.0/8", "--comment", "office")) == "network 10.0.0.0/8 added\n"
        assert ok(run("content", "add", "words", "cheap pills", "--score", "2.5")) == 'words "cheap pills" added (score 2.5)\n'
        for cmd in (["domain", "list"], ["network", "list"], ["content", "list"], ["content", "list", "--json"],
                    ["account", "list"], ["token", "list", "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        assert "example.com\t127.0.0.1:" in ok(run("domain", "list"))

        # Greylisting and DNSBL settings changed over the file through the API.
        assert ok(run("settings", "set", "greylist.delay_secs", "120")) == \
            "greylist.delay_secs changed; a running gateway applies it within seconds\n"
        for cmd in (["settings", "list"], ["settings", "list", "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        assert "greylist.delay_secs = 120" in g.cli("settings", "list").stdout
        r = run("settings", "set", "greylist.delay_secs", "soon")
        assert r.returncode != 0 and "HTTP 400" in r.stderr and "delay_secs" in r.stderr, r.stderr
        r = run("settings", "set", "greylist.delay_secs", "60", token=reader)
        assert r.returncode != 0 and "HTTP 403" in r.stderr, r.stderr
        assert ok(run("settings", "reset", "greylist.delay_secs")) == \
            "greylist.delay_secs is the configuration file's again\n"
        assert "greylist.delay_secs = 300" in g.cli("settings", "list").stdout

        # Rules through the API, read back the same.
        rules = tmp_path / "rules.toml"
        rules.write_text('[[rule]]\nname = "hold payroll"\n'
                         'when = [{ header = "subject", matches = "payroll" }]\n'
                         'actions = [{ action = "quarantine", class = "policy" }]\n')
        assert ok(run("rule", "add", str(rules))) == 'rule "hold payroll" saved\n'
        for cmd in (["rule", "list"], ["rule", "list", "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd

        # A message for the domain: in the log and in the queue (its route is down).
        time.sleep(2.5)  # the gateway picks policy changes up within two seconds
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            s.sendmail("alice@sender.test", ["bob@example.com"],
                       "From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: remote cli\r\n\r\nhello\r\n")
        deadline = time.time() + 10
        while "remote cli" not in ok(run("log", "search", "--recipient", "bob@example.com")):
            assert time.time() < deadline, ok(run("log", "search"))
            time.sleep(0.3)
        for cmd in (["log", "search", "--recipient", "bob@example.com"], ["log", "search", "--json"],
                    ["queue", "list"], ["queue", "list", "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        queued = json.loads(ok(run("queue", "list", "--json")))
        assert [q["recipients"] for q in queued] == [["bob@example.com"]], queued
        qid = queued[0]["id"]
        assert ok(run("queue", "show", qid)) == g.cli("queue", "show", qid).stdout
        ok(run("queue", "hold", qid))
        assert f"{qid} HELD" in g.cli("queue", "list").stdout
        ok(run("queue", "release", qid))
        assert "HELD" not in ok(run("queue", "list"))

        # Held mail: listed and shown as locally, released, reported, deleted.
        with smtplib.SMTP("127.0.0.1", g.smtp, timeout=10) as s:
            s.sendmail("alice@sender.test", ["bob@example.com", "carol@example.com", "dave@example.com"],
                       "From: alice@sender.test\r\nSubject: payroll\r\n\r\nnew account\r\n")
        for cmd in (["quarantine", "list"], ["quarantine", "list", "--json"],
                    ["quarantine", "list", "--recipient", "bob@example.com"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        held = {h["recipient"]: h["id"] for h in json.loads(ok(run("quarantine", "list", "--json")))}
        assert sorted(held) == ["bob@example.com", "carol@example.com", "dave@example.com"]
        bob, carol, dave = held["bob@example.com"], held["carol@example.com"], held["dave@example.com"]
        assert ok(run("quarantine", "show", bob)) == g.cli("quarantine", "show", bob).stdout
        # A rule dry run and a recipient's digest frequency go through the API as well.
        candidate = tmp_path / "candidate.toml"
        candidate.write_text(rules.read_text().replace('class = "policy"', 'class = "spam"'))
        for cmd in (["rule", "test", str(candidate), bob], ["rule", "test", str(candidate), bob, "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        assert "with these rules: quarantine (spam) (rule hold payroll;" in ok(run("rule", "test", str(candidate), bob))
        assert ok(run("quarantine", "digest-frequency", "bob@example.com", "weekly")) == "bob@example.com: weekly\n"
        assert g.cli("quarantine", "digest-frequency", "bob@example.com").stdout == "bob@example.com: weekly\n"
        r = run("quarantine", "digest-frequency", "bob@example.com", "fortnightly")
        assert r.returncode != 0 and "HTTP 400" in r.stderr, r.stderr
        assert "new account" in ok(run("quarantine", "show", bob))
        released = run("quarantine", "release", bob)
        assert ok(released).startswith(f"{bob} released as ") and released.stderr == ""
        assert len(ok(released).splitlines()) == 1
        again = run("quarantine", "release", bob)
        assert again.returncode != 0 and "HTTP 409" in again.stderr, again.stderr
        assert ok(run("quarantine", "report-spam", carol)) == f"{carol} reported as spam and deleted\n"
        assert ok(run("quarantine", "delete", dave)) == f"{dave} deleted\n"
        assert json.loads(g.cli("quarantine", "list", "--json").stdout) == []
        assert ok(run("rule", "remove", "hold payroll")) == 'rule "hold payroll" removed\n'

        # The changes are in the audit log as the API's, under the token's name.
        audit = json.loads(ok(run("audit", "list", "--action", "domain.", "--json")))
        assert [(a["action"], a["via"]) for a in audit] == [("domain.add", "api")]

        # The token from a file instead of the environment.
        token_file = tmp_path / "token"
        token_file.write_text(admin + "\n")
        token_file.chmod(0o644)
        r = remote(g, tmp_path, "domain", "list", token_file=token_file)
        assert "example.com" in ok(r) and "chmod 600" in r.stderr
        token_file.chmod(0o600)
        r = remote(g, tmp_path, "domain", "list", token_file=token_file)
        assert "example.com" in ok(r) and r.stderr == ""

        # This host's configuration file is not read for a remote gateway; a token file
        # without --url is a mistake, not a local command.
        assert "example.com" in ok(run("--config", str(tmp_path / "absent.toml"), "domain", "list"))
        r = subprocess.run([str(BIN), "--config", str(g.config), "--token-file", str(token_file), "domain", "list"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "--url" in r.stderr, r.stderr

        # A read-only token reads, and is refused a change: 403, one line, non-zero exit.
        assert ok(run("domain", "list", token=reader)) == ok(run("domain", "list"))
        r = run("domain", "add", "other.example", "--route", "127.0.0.1:25", token=reader)
        assert r.returncode != 0 and r.stdout == ""
        assert "HTTP 403" in r.stderr and "forbidden" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "other.example" not in g.cli("domain", "list").stdout

        # A wrong token: 401.
        r = run("domain", "list", token="pc_not-a-token")
        assert r.returncode != 0 and "HTTP 401" in r.stderr, r.stderr
        # No token at all: told how to give one.
        r = remote(g, tmp_path, "domain", "list")
        assert r.returncode != 0 and "PORTCULLIS_TOKEN" in r.stderr, r.stderr

        # Not found: 404 with the API's words.
        r = run("domain", "remove", "never.example")
        assert r.returncode != 0 and "HTTP 404" in r.stderr, r.stderr

        # Without the gateway's certificate, TLS verification fails and says so.
        r = run("domain", "list", ca=False)
        assert r.returncode != 0 and "TLS" in r.stderr and "--ca-file" in r.stderr, r.stderr
        assert f"https://localhost:{g.https}/" in r.stderr

        # Nobody listening: the URL in the message.
        closed = free_port()
        r = run("domain", "list", url=f"https://localhost:{closed}")
        assert r.returncode != 0 and f"cannot connect to https://localhost:{closed}/" in r.stderr, r.stderr

        # Commands that only run beside the store refuse, and do nothing locally.
        for cmd in (["store", "migrate"], ["serve"], ["corpus", "train", "--ham", ".", "--spam", "."],
                    ["quarantine", "digest"]):
            r = run(*cmd)
            assert r.returncode != 0 and "cannot act on a remote gateway" in r.stderr, (cmd, r.stderr)
        assert not (tmp_path / "elsewhere" / "data").exists()

        # Plain http is refused before anything is sent.
        r = run("domain", "list", url=f"http://localhost:{g.https}")
        assert r.returncode != 0 and "https://" in r.stderr, r.stderr

        ok(run("domain", "remove", "example.com"))
        assert "example.com" not in g.cli("domain", "list").stdout
    finally:
        g.stop()


def same_but_keys(remote_text, local_text):
    """Outputs alike but for the domain (example.com remotely, example.org locally), the
    public keys, which every key has its own of, and the order of keys made in the same
    second on one domain and not on the other (keys are ordered by creation time)."""
    def norm(t):
        lines = []
        for line in re.sub(r"p=[A-Za-z0-9+/=\" ]+", "p=KEY", t).splitlines():
            head, sep, tail = line.partition(" with: ")
            lines.append(head + sep + ", ".join(sorted(tail.split(", "))) if sep else line)
        return sorted(lines)
    return norm(remote_text) == norm(local_text.replace("example.org", "example.com"))


def test_dkim_keys_and_reports_on_a_remote_gateway(tmp_path):
    g = Gateway(tmp_path / "gw")
    g.start()
    try:
        wait_port(g.https, proc=g.proc)
        admin = make_token(g, "remote")
        reader = make_token(g, "reader", "--read-only")
        run = lambda *a, **kw: remote(g, tmp_path, *a, token=kw.pop("token", admin), **kw)

        # A key made remotely reads as one made locally (on a twin domain), and both are
        # listed the same wherever the list is asked.
        made = ok(run("dkim", "generate", "example.com", "--selector", "s1"))
        assert made.startswith("DKIM key for example.com: selector s1, rsa-sha256, active.\n"), made
        assert same_but_keys(made, g.cli("dkim", "generate", "example.org", "--selector", "s1").stdout)
        staged = ok(run("dkim", "generate", "example.com", "--selector", "e1", "--algorithm", "ed25519", "--stage"))
        assert "selector e1, ed25519-sha256, pending." in staged, staged
        assert same_but_keys(staged, g.cli("dkim", "generate", "example.org", "--selector", "e1",
                                           "--algorithm", "ed25519", "--stage").stdout)
        assert made.splitlines()[-1] in g.cli("dkim", "list", "example.com").stdout
        for cmd in (["dkim", "list"], ["dkim", "list", "--json"], ["dkim", "list", "example.com"],
                    ["dkim", "list", "example.com", "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        assert sorted(k["selector"] for k in json.loads(ok(run("dkim", "list", "example.com", "--json")))) == ["e1", "s1"]

        # The gateway's resolver is a closed port: every check is a DNS error, exit 1,
        # said the same way remotely and locally.
        for cmd in (["dkim", "check", "example.com", "--json"], ["dkim", "check", "example.com"],
                    ["dkim", "check", "example.com", "s1", "--json"]):
            r, l = run(*cmd), g.cli(*cmd, check=False)
            assert (r.returncode, r.stdout) == (l.returncode, l.stdout) and r.returncode == 1, (cmd, r, l)
        checks = [json.loads(line) for line in ok_or_1(run("dkim", "check", "example.com", "--json"))]
        assert sorted((c["selector"], c["status"]) for c in checks) == [("e1", "error"), ("s1", "error")], checks
        r = run("dkim", "check", "example.com", "nope")
        assert r.returncode != 0 and "HTTP 404" in r.stderr, r.stderr

        # Rotate, activate, retire and delete: the same words remotely as locally.
        for cmd in (["dkim", "activate", "DOMAIN"], ["dkim", "rotate", "DOMAIN"],
                    ["dkim", "rotate", "DOMAIN", "--stage"], ["dkim", "activate", "DOMAIN"],
                    ["dkim", "retire", "DOMAIN", "s1"], ["dkim", "delete", "DOMAIN", "s1"]):
            said = ok(run(*[a.replace("DOMAIN", "example.com") for a in cmd]))
            here = g.cli(*[a.replace("DOMAIN", "example.org") for a in cmd]).stdout
            assert same_but_keys(said, here), (cmd, said, here)
        listed = json.loads(ok(run("dkim", "list", "example.com", "--json")))
        assert "s1" not in [k["selector"] for k in listed], listed
        assert ok(run("dkim", "list")) == g.cli("dkim", "list").stdout
        # Retiring the last active keys warns that mail goes unsigned, both ways.
        for k in [k for k in listed if k["state"] == "active"]:
            said = ok(run("dkim", "retire", "example.com", k["selector"]))
            assert same_but_keys(said, g.cli("dkim", "retire", "example.org", k["selector"]).stdout), said
        assert "has no active DKIM key now" in said, said

        # A read-only token reads keys and is refused a change; signing needs the private
        # keys and so stays on the gateway's host.
        assert ok(run("dkim", "list", token=reader)) == g.cli("dkim", "list").stdout
        r = run("dkim", "generate", "example.net", token=reader)
        assert r.returncode != 0 and r.stdout == "" and "HTTP 403" in r.stderr, r.stderr
        assert "example.net" not in g.cli("dkim", "list").stdout
        r = run("dkim", "sign", "example.com", input="From: a@example.com\r\n\r\nhi\r\n")
        assert r.returncode != 0 and r.stdout == "" and "cannot act on a remote gateway" in r.stderr, r.stderr
        assert "dkim sign" in r.stderr, r.stderr

        # Reports taken in on the gateway's host, listed and shown the same remotely.
        eml = tmp_path / "dmarc.eml"
        eml.write_bytes(report_message("application", "gzip",
                                       "receiver.example!example.com!1795305600!1795391999.xml.gz",
                                       gzip.compress(DMARC_XML.format(report_id="rcv-remote").encode())))
        stored = g.cli("report", "import", str(eml)).stdout
        assert stored.startswith("stored report "), stored
        rid = stored.split()[-1]
        for cmd in (["report", "list"], ["report", "list", "--json"],
                    ["report", "list", "--kind", "dmarc", "--domain", "example.com", "--limit", "5"],
                    ["report", "list", "--kind", "tlsrpt", "--json"],
                    ["report", "show", rid], ["report", "show", rid, "--json"]):
            assert ok(run(*cmd)) == g.cli(*cmd).stdout, cmd
        assert f"{rid}  dmarc " in ok(run("report", "list"))
        r = run("report", "show", "nope")
        assert r.returncode != 0 and "HTTP 404" in r.stderr, r.stderr
        # Taking in and sending reports run on the gateway's host only.
        for cmd in (["report", "import", str(eml)], ["report", "send-dmarc"], ["report", "send-tlsrpt"]):
            r = run(*cmd)
            assert r.returncode != 0 and "cannot act on a remote gateway" in r.stderr, (cmd, r.stderr)
            assert f"portcullis {' '.join(cmd[:2])}" in r.stderr, r.stderr
        assert json.loads(ok(run("report", "list", "--json")).splitlines()[0])["id"] == rid
        assert len(ok(run("report", "list")).splitlines()) == 1
    finally:
        g.stop()


def ok_or_1(r):
    """The lines of a command that exits 1 when something is wrong, but ran."""
    assert r.returncode in (0, 1), r.stderr
    return [line for line in r.stdout.splitlines() if line.strip()]
