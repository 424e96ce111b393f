"""Console and API accounts through the real binary's CLI: the first serve makes `admin`
and prints its password once; accounts, tokens and the audit log from the command line,
with secrets shown once and never in the audit log."""

import json
import re

from conftest import Gateway


def test_first_start_prints_the_admin_password_once(tmp_path):
    g = Gateway(tmp_path / "gw")
    g.start()
    g.stop()
    log = g.log.read_text()
    found = re.findall(r"console account: admin, password: (\S+)", log)
    assert len(found) == 1 and len(found[0]) == 20, log
    g.start()
    g.stop()
    assert len(re.findall(r"console account: admin, password:", g.log.read_text())) == 1
    accounts = json.loads(g.cli("account", "list", "--json").stdout)
    assert [a["name"] for a in accounts] == ["admin"]


def test_accounts_tokens_and_audit_from_the_cli(tmp_path):
    g = Gateway(tmp_path / "gw")
    out = g.cli("account", "add", "dora", "--role", "domain-admin", "--domain", "example.com").stdout
    generated = re.search(r"password: (\S+)", out).group(1)
    g.cli("account", "add", "bob@example.com", "--role", "user", "--password-stdin",
          input="a long enough passphrase\n")
    short = g.cli("account", "add", "eve", "--role", "admin", "--password-stdin", input="short\n", check=False)
    assert short.returncode != 0 and "at least 12" in short.stderr
    g.cli("account", "passwd", "dora", "--password-stdin", input="another long passphrase\n")

    out = g.cli("token", "create", "--account", "dora", "--name", "ci", "--role", "domain-admin",
                "--domain", "example.com", "--read-only", "--expires-days", "30").stdout
    secret = out.strip().splitlines()[-1]
    too_much = g.cli("token", "create", "--account", "dora", "--name", "root", "--role", "admin", check=False)
    assert too_much.returncode != 0 and "more rights than its account" in too_much.stderr
    tokens = json.loads(g.cli("token", "list", "--json").stdout)
    assert [(t["name"], t["read_only"], t["revoked"]) for t in tokens] == [("ci", True, False)]
    g.cli("token", "revoke", str(tokens[0]["id"]))
    assert json.loads(g.cli("token", "list", "--json").stdout)[0]["revoked"]
    g.cli("account", "remove", "bob@example.com")

    rows = json.loads(g.cli("audit", "list", "--json").stdout)
    actions = [r["action"] for r in rows]
    for action in ["account.add", "account.password", "token.create", "token.revoke", "account.remove"]:
        assert action in actions, actions
    assert all(r["via"] == "cli" and r["actor"].startswith("cli:") for r in rows)
    text = json.dumps(rows)
    for s in [generated, secret, "a long enough passphrase", "another long passphrase"]:
        assert s not in text
    only_tokens = json.loads(g.cli("audit", "list", "--action", "token.", "--json").stdout)
    assert sorted(r["action"] for r in only_tokens) == ["token.create", "token.revoke"]
