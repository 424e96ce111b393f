"""Rules, lists and the quarantine end to end: rules added from a TOML file decide at
SMTP time, change messages on their way (subject tag, stripped attachment, added header,
redirect), lists refuse and allow, quarantined mail is released exactly once and
delivered, and the message log says which rule decided and why."""

import base64
import functools
import json
import smtplib
import subprocess
import time

import pytest

from peers import BIN, Gateway, send, wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture
def gw(tmp_path, sink):
    # Greylisting is tested on its own (test_checks.py); here it would only delay.
    g = Gateway(tmp_path / "gw", "[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"
                                 "[greylist]\nmode = \"never\"\n")
    g.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    yield g
    g.stop()


def mime(subject, attachment=None, body="Hello Bob,\r\nsee you at lunch.\r\n"):
    head = (f"From: alice@outside.test\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@outside.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n")
    if attachment is None:
        return (head + "Content-Type: text/plain\r\n\r\n" + body).encode()
    name, data = attachment
    b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
            f"--XX\r\nContent-Type: text/plain\r\n\r\n{body}"
            f'--XX\r\nContent-Type: application/octet-stream; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{b64}--XX--\r\n").encode()


# The mail of these tests comes in from outside; the tests look at the replies.
send_inbound = functools.partial(send, sender="alice@outside.test", helo="mail.outside.test", check=False)


def rules(g, tmp_path, text):
    f = tmp_path / f"rules-{time.monotonic_ns()}.toml"
    f.write_text(text)
    g.cli("rule", "add", str(f))


def log_of(g, subject):
    found = json.loads(g.cli("log", "search", "--json").stdout)
    return next(m for m in found if m["subject"] and subject in m["subject"])


def test_rules_decide_and_change_messages(gw, sink, tmp_path):
    rules(gw, tmp_path, r'''
[[rule]]
name = "no executables"
direction = "inbound"
when = [{ attachment_extension = ["exe", "scr"] }]
actions = [{ action = "reject", code = 550, status = "5.7.1", text = "Executable attachments are refused" }]

[[rule]]
name = "strip scripts"
when = [{ attachment_extension = ["js"] }]
actions = [{ action = "strip_attachments", notice = "A script was removed." }, { action = "add_header", name = "X-Stripped", value = "js" }]

[[rule]]
name = "invoices"
when = [{ header = "subject", matches = "^invoice" }]
actions = [{ action = "tag_subject", tag = "[CHECK]" }, { action = "copy", to = "archive@example.com" }]

[[rule]]
name = "drop"
when = [{ header = "subject", matches = "please drop me" }]
actions = [{ action = "discard" }]
''')
    listed = gw.cli("rule", "list").stdout
    assert 'name = "no executables"' in listed and 'name = "drop"' in listed
    gw.start()
    code, text = send_inbound(gw.smtp, message=mime("tool", ("setup.exe", b"MZ\x90\x00" + b"\x00" * 60)))
    assert (code, text) == (550, b"5.7.1 Executable attachments are refused")
    assert send_inbound(gw.smtp, message=mime("script", ("run.js", b"alert(1)")))[0] == 250
    assert send_inbound(gw.smtp, message=mime("Invoice 42"))[0] == 250
    assert send_inbound(gw.smtp, message=mime("please drop me"))[0] == 250
    # The invoice goes to bob and the archive in one transaction: two files in all.
    sink.wait_count(2)
    msgs = {m["Subject"]: m for m in sink.messages()}
    assert set(msgs) == {"script", "[CHECK] Invoice 42"}, list(msgs)
    stripped = msgs["script"].as_bytes()
    assert b"A script was removed." in stripped and b"alert(1)" not in stripped
    assert base64.b64encode(b"alert(1)") not in stripped
    assert msgs["script"]["X-Stripped"] == "js"
    # Every inbound message carries the spam headers.
    assert msgs["script"]["X-Spam-Status"].startswith("No, score=")
    # The log says which rule decided and what was found.
    rejected = log_of(gw, "tool")
    assert rejected["verdict"] == "reject" and rejected["rule"] == "no executables"
    assert rejected["recipients"][0]["status"] == "rejected"
    dropped = log_of(gw, "please drop me")
    assert dropped["verdict"] == "discard" and dropped["recipients"][0]["status"] == "discarded"
    invoice = log_of(gw, "Invoice 42")
    assert sorted(r["address"] for r in invoice["recipients"]) == ["archive@example.com", "bob@example.com"]


def test_lists_refuse_and_allow(gw, sink):
    gw.cli("list", "add", "block", "sender", "spam.test")
    gw.cli("list", "add", "valid", "recipient", "bob@example.com", "--scope", "example.com")
    gw.cli("list", "add", "block", "ip", "not-an-ip", check=False)
    bad = gw.cli("list", "add", "block", "ip", "not-an-ip", check=False)
    assert bad.returncode != 0 and "not an IP" in bad.stderr
    gw.start()
    code, text = send_inbound(gw.smtp, message=mime("x"), sender="a@mail.spam.test")
    assert (code, text[:5]) == (550, b"5.7.1"), (code, text)
    code, text = send_inbound(gw.smtp, message=mime("x"), rcpts=("nobody@example.com",))
    assert (code, text[:5]) == (550, b"5.1.1"), (code, text)
    assert send_inbound(gw.smtp, message=mime("fine"))[0] == 250
    sink.wait_count(1)
    shown = json.loads(gw.cli("list", "show", "--json").stdout)
    assert {"kind": "block", "field": "sender", "value": "spam.test"} in shown


def test_quarantine_round_trip_release_once(gw, sink, tmp_path):
    rules(gw, tmp_path, r'''
[[rule]]
name = "hold payroll"
when = [{ header = "subject", matches = "payroll" }]
actions = [{ action = "quarantine", class = "policy" }]
''')
    gw.start()
    assert send_inbound(gw.smtp, message=mime("payroll changes"),
                        rcpts=("bob@example.com", "carol@example.com"))[0] == 250
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    assert sorted(h["recipient"] for h in held) == ["bob@example.com", "carol@example.com"]
    assert {h["class"] for h in held} == {"policy"}
    assert held[0]["subject"] == "payroll changes" and held[0]["sender"] == "alice@outside.test"
    assert gw.queue_ids() == [] and sink.files() == []
    bob = next(h for h in held if h["recipient"] == "bob@example.com")

    gw.cli("quarantine", "release", bob["id"], "--allow-sender")
    sink.wait_count(1)
    (msg,) = sink.messages()
    assert msg["Subject"] == "payroll changes"
    # Released as it would have been delivered: our Received header is on it.
    assert any("by gw.test (Portcullis)" in r for r in msg.get_all("Received")), msg.get_all("Received")
    again = gw.cli("quarantine", "release", bob["id"], check=False)
    assert again.returncode != 0 and "not held" in again.stderr
    # Only bob's copy was released; carol's is still held.
    held_now = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    assert [h["recipient"] for h in held_now] == ["carol@example.com"]
    gw.cli("quarantine", "delete", held_now[0]["id"])
    assert json.loads(gw.cli("quarantine", "list", "--json").stdout) == []
    # Released with --allow-sender: the sender is now on bob's allow list.
    entries = json.loads(gw.cli("list", "show", "--json").stdout)
    assert any(e["kind"] == "allow" and e["value"] == "alice@outside.test"
               and e["scope"] == "bob@example.com" for e in entries), entries
    time.sleep(2.5)  # the policy reloads every 2 s
    assert send_inbound(gw.smtp, message=mime("payroll again"))[0] == 250
    # The allow list does not bypass an administrator's policy rule: it only cancels spam scores.
    wait_for(lambda: len(json.loads(gw.cli("quarantine", "list", "--json").stdout)) == 1,
             what="second payroll message held")


def test_gtube_is_quarantined_as_spam(gw, sink):
    gw.start()
    assert send_inbound(gw.smtp, message=mime("offer", body=f"Buy now\r\n{GTUBE}\r\n"))[0] == 250
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    assert len(held) == 1 and held[0]["class"] == "spam" and held[0]["score"] >= 100, held
    assert sink.files() == []


def test_bad_rules_are_refused_with_file_and_line(gw, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[[rule]]\nname = "x"\nactions = [{ action = "reject", code = 450 }]\n')
    r = gw.cli("rule", "add", str(f), check=False)
    assert r.returncode != 0 and "not a 5xx" in r.stderr
    f.write_text('[[rule]]\nname = "x"\n\nwhen = [{ finding = "a", colour = "red" }]\nactions = []\n')
    r = gw.cli("rule", "add", str(f), check=False)
    assert r.returncode != 0 and "bad.toml:4" in r.stderr and "colour" in r.stderr, r.stderr


def test_config_export_import_round_trip(gw, tmp_path, sink):
    rules(gw, tmp_path, '[[rule]]\nname = "r1"\nwhen = [{ score_at_least = 3.0 }]\n'
                        'actions = [{ action = "tag_subject", tag = "[MAYBE]" }]\n')
    gw.cli("list", "add", "allow", "ip", "192.0.2.0/24", "--comment", "partner")
    gw.cli("network", "add", "10.1.0.0/16")
    exported = gw.cli("config", "export").stdout
    assert "r1" in exported and "192.0.2.0/24" in exported and "example.com" in exported
    other = Gateway(tmp_path / "other")
    f = tmp_path / "policy.toml"
    f.write_text(exported)
    other.cli("config", "import", str(f))
    assert other.cli("config", "export").stdout == exported


def test_digest_links_release_once_and_cannot_be_forged(gw, sink, tmp_path):
    import re
    rules(gw, tmp_path, '[[rule]]\nname = "hold"\nwhen = [{ header = "subject", matches = "^held" }]\n'
                        'actions = [{ action = "quarantine", class = "spam" }]\n'
                        '[[rule]]\nname = "dlp"\nwhen = [{ header = "subject", matches = "^secret" }]\n'
                        'actions = [{ action = "quarantine", class = "policy" }]\n')
    gw.start()
    assert send_inbound(gw.smtp, message=mime("held one"))[0] == 250
    assert send_inbound(gw.smtp, message=mime("held two"))[0] == 250
    # Held by policy: for the administrator, not in the user's digest.
    assert send_inbound(gw.smtp, message=mime("secret plans"))[0] == 250
    out = gw.cli("quarantine", "digest").stdout
    assert "1 digests queued" in out
    sink.wait_count(1)
    (digest,) = sink.messages()
    assert "bob@example.com" in digest["To"] and "2 held message" in digest["Subject"]
    assert digest["Auto-Submitted"] == "auto-generated"
    text = next(p for p in digest.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "held one" in text and "held two" in text and "secret plans" not in text
    tokens = re.findall(r"/release\?t=(\S+)", text)
    assert len(tokens) == 2, text
    # Nothing new to list: a second run sends nothing.
    assert "0 digests queued" in gw.cli("quarantine", "digest").stdout
    # A forged link: another item with the first one's signature.
    item, action, expires, mac = tokens[0].rsplit(".", 3)
    other_item = tokens[1].rsplit(".", 3)[0]
    forged = gw.cli("quarantine", "redeem", f"{other_item}.{action}.{expires}.{mac}", check=False)
    assert forged.returncode != 0 and "signature" in forged.stderr
    longer = gw.cli("quarantine", "redeem", f"{item}.{action}.{int(expires) + 999}.{mac}", check=False)
    assert longer.returncode != 0 and "signature" in longer.stderr
    assert "released" in gw.cli("quarantine", "redeem", tokens[0]).stdout
    sink.wait_count(2)
    again = gw.cli("quarantine", "redeem", tokens[0], check=False)
    assert again.returncode != 0 and "not held" in again.stderr
    subjects = sorted(m["Subject"] for m in sink.messages())
    assert subjects[1:] == ["held one"] or subjects[1:] == ["held two"], subjects


def test_digest_release_all_and_each_recipients_frequency(gw, sink, tmp_path):
    import re
    rules(gw, tmp_path, '[[rule]]\nname = "hold"\nwhen = [{ header = "subject", matches = "^held" }]\n'
                        'actions = [{ action = "quarantine", class = "spam" }]\n')
    gw.start()
    for n in ("one", "two", "three"):
        assert send_inbound(gw.smtp, message=mime(f"held {n}"))[0] == 250
    out = gw.cli("quarantine", "digest").stdout
    assert "1 digests queued" in out
    (digest,) = sink.wait_count(1) and sink.messages()
    text = next(p for p in digest.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    (release_all,) = re.findall(r"/release-all\?t=(\S+)", text)
    (settings,) = re.findall(r"/settings\?t=(\S+)", text)
    one = re.findall(r"/release\?t=(\S+)", text)[0]
    # A dry run of a rule on a held copy: what would happen, nothing saved.
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text('[[rule]]\nname = "refuse-held"\nwhen = [{ header = "subject", matches = "^held" }]\n'
                         'actions = [{ action = "reject", code = 550, status = "5.7.1", text = "Not here" }]\n')
    out = gw.cli("rule", "test", str(candidate), held[0]["id"]).stdout
    assert "now: quarantine (spam) (rule hold;" in out, out
    assert "with these rules: quarantine (spam) (rule hold;" in out, out  # "hold" comes first
    out = json.loads(gw.cli("rule", "test", str(candidate), held[0]["id"], "--json").stdout)
    assert out["current"]["matched"] == ["hold"] and out["candidate"]["rule"] == "hold"
    # A rule of the same name replaces the stored one, in its place.
    candidate.write_text(candidate.read_text().replace("refuse-held", "hold"))
    out = gw.cli("rule", "test", str(candidate), held[0]["id"]).stdout
    assert "with these rules: reject 550 5.7.1 Not here (rule hold;" in out, out
    assert [r["name"] for r in json.loads(gw.cli("rule", "list", "--json").stdout)] == ["hold"]
    assert len(json.loads(gw.cli("quarantine", "list", "--json").stdout)) == 3
    # One of the three is released on its own first; "release all" delivers the rest.
    assert "released" in gw.cli("quarantine", "redeem", one).stdout
    out = gw.cli("quarantine", "redeem", release_all).stdout
    assert out.count("released as") == 2 and "1 no longer held" in out, out
    sink.wait_count(4)
    assert sorted(m["Subject"] for m in sink.messages()) == [
        "Quarantine: 3 held message(s)", "held one", "held three", "held two"]
    again = gw.cli("quarantine", "redeem", release_all, check=False)
    assert again.returncode != 0 and "nothing is left" in again.stderr
    # The settings link changes nothing by itself when redeemed as a release.
    wrong = gw.cli("quarantine", "redeem", settings, check=False)
    assert wrong.returncode != 0 and "digest frequency" in wrong.stderr

    # bob chose never: a forced run skips him, another recipient still gets one.
    assert "bob@example.com: never" in gw.cli("quarantine", "digest-frequency", "bob@example.com", "never").stdout
    bad = gw.cli("quarantine", "digest-frequency", "bob@example.com", "fortnightly", check=False)
    assert bad.returncode != 0 and "hourly" in bad.stderr
    assert send_inbound(gw.smtp, message=mime("held four"))[0] == 250
    assert send_inbound(gw.smtp, message=mime("held five"), rcpts=["carol@example.com"])[0] == 250
    out = gw.cli("quarantine", "digest").stdout
    assert "1 digests queued" in out, out
    sink.wait_count(5)
    digests = sorted(m["To"] for m in sink.messages() if m["Subject"].startswith("Quarantine"))
    assert digests == ["<bob@example.com>", "<carol@example.com>"], digests
    assert "bob@example.com: default" in gw.cli("quarantine", "digest-frequency", "bob@example.com", "default").stdout
    assert "1 digests queued" in gw.cli("quarantine", "digest").stdout


def test_content_lists_score_words_and_patterns(gw, sink, tmp_path):
    gw.cli("content", "add", "pharma", "cheap pills", "--score", "4", "--field", "body")
    gw.cli("content", "add", "pharma", r"v[i1]agr[a@]", "--regex", "--score", "3")
    bad = gw.cli("content", "add", "pharma", "(", "--regex", "--score", "1", check=False)
    assert bad.returncode != 0 and "pattern" in bad.stderr
    bad = gw.cli("content", "add", "pharma", "x", "--score", "1", "--field", "footer", check=False)
    assert bad.returncode != 0 and "field" in bad.stderr
    # A rule can act on a list by name.
    rules(gw, tmp_path, '[[rule]]\nname = "pharma"\nwhen = [{ finding = "content.pharma" }, { score_at_least = 7.0 }]\n'
                        'actions = [{ action = "reject", code = 550, status = "5.7.1", text = "No pharmacy spam" }]\n')
    gw.start()
    code, text = send_inbound(gw.smtp, message=mime("offer", body="Cheap pills and V1AGRA here\r\n"))
    assert (code, text) == (550, b"5.7.1 No pharmacy spam")
    # One match scores, but not enough for the rule; the score shows in the headers.
    assert send_inbound(gw.smtp, message=mime("hi", body="my v1agra question\r\n"))[0] == 250
    (msg,) = sink.wait_count(1) and sink.messages()
    assert "content.pharma=3.00" in msg["X-Spam-Status"], msg["X-Spam-Status"]
    # Whole words only, so "cheap pillsbury" does not match "cheap pills".
    listed = json.loads(gw.cli("content", "list", "--json").stdout)
    assert {(r["list"], r["pattern"], r["field"]) for r in listed} == {
        ("pharma", "cheap pills", "body"), ("pharma", r"v[i1]agr[a@]", "any")}
    exported = gw.cli("config", "export").stdout
    assert "[[content]]" in exported and "cheap pills" in exported


def test_recipients_with_different_policies_are_split(gw, sink, tmp_path):
    """One verdict serves a whole transaction, so a recipient under other rules or lists
    is deferred (452 4.5.3) and comes in a transaction of its own."""
    rules(gw, tmp_path, '[[rule]]\nname = "leaver"\nusers = ["leaver@example.com"]\n'
                        'actions = [{ action = "redirect", to = ["manager@example.com"] }]\n')
    gw.cli("list", "add", "allow", "sender", "friend@outside.test", "--scope", "bob@example.com")
    gw.start()
    with smtplib.SMTP("127.0.0.1", gw.smtp, timeout=20) as s:
        s.ehlo("mail.outside.test")
        s.mail("friend@outside.test")
        assert s.rcpt("ceo@example.com")[0] == 250
        code, text = s.rcpt("leaver@example.com")
        assert (code, text[:5]) == (452, b"4.5.3"), (code, text)
        code, text = s.rcpt("bob@example.com")
        assert (code, text[:5]) == (452, b"4.5.3"), (code, text)
        assert s.rcpt("carol@example.com")[0] == 250
        assert s.data(mime("all hands"))[0] == 250
    # The leaver's copy, on its own, is redirected; the others were not.
    assert send_inbound(gw.smtp, message=mime("for the leaver"), sender="friend@outside.test",
                        rcpts=("leaver@example.com",))[0] == 250
    sink.wait_count(2)
    logged = json.loads(gw.cli("log", "search", "--json").stdout)
    rcpts = {m["subject"]: sorted(r["address"] for r in m["recipients"]) for m in logged}
    assert rcpts["all hands"] == ["carol@example.com", "ceo@example.com"]
    assert rcpts["for the leaver"] == ["manager@example.com"]


def test_attachment_that_cannot_be_stripped_is_held(gw, sink, tmp_path):
    rules(gw, tmp_path, '[[rule]]\nname = "strip exe"\nwhen = [{ attachment_extension = ["exe"] }]\n'
                        'actions = [{ action = "strip_attachments" }]\n')
    gw.start()
    inner = mime("inner", ("tool.exe", b"MZ\x90\x00" + b"\x00" * 60)).decode()
    outer = ("From: alice@outside.test\r\nTo: bob@example.com\r\nSubject: forwarded\r\n"
             "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <fw@outside.test>\r\nMIME-Version: 1.0\r\n"
             'Content-Type: multipart/mixed; boundary="OUT"\r\n\r\n--OUT\r\nContent-Type: text/plain\r\n\r\nsee below\r\n'
             '--OUT\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename="fw.eml"\r\n\r\n'
             + inner + "\r\n--OUT--\r\n").encode()
    assert send_inbound(gw.smtp, message=outer)[0] == 250
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    assert [(h["subject"], h["class"], h["rule"]) for h in held] == [("forwarded", "policy", "strip exe")], held
    assert sink.files() == []


def test_released_message_is_logged_and_starts_a_fresh_queue_life(gw, sink, tmp_path):
    rules(gw, tmp_path, '[[rule]]\nname = "hold"\nwhen = [{ header = "subject", matches = "^hold" }]\n'
                        'actions = [{ action = "quarantine", class = "spam" }]\n')
    gw.start()
    assert send_inbound(gw.smtp, message=mime("hold me"))[0] == 250
    (item,) = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    out = gw.cli("quarantine", "release", item["id"]).stdout
    queue_id = out.split()[-1]
    sink.wait_count(1)
    logged = {m["id"]: m for m in json.loads(gw.cli("log", "search", "--json").stdout)}
    assert logged[queue_id]["rule"] == f"released from quarantine ({item['id']})"
    wait_for(lambda: json.loads(gw.cli("log", "search", "--json").stdout)[0]["recipients"][0]["status"] == "delivered",
             what="released copy logged as delivered")
    assert logged[queue_id]["received_at"] >= item["received_at"]
    # A released "spam" taught the classifier a ham; a reported one a spam.
    assert send_inbound(gw.smtp, message=mime("hold this too"))[0] == 250
    (other,) = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    gw.cli("quarantine", "report-spam", other["id"])
    assert json.loads(gw.cli("quarantine", "list", "--json").stdout) == []
    assert gw.sql("SELECT ham_messages, spam_messages FROM bayes_totals") == [(1, 1)]


def test_bad_subject_tag_is_a_config_error(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[spam]\nsubject_tag = "[SPAM]\\r\\nBcc: x@y"\n')
    r = subprocess.run([str(BIN), "--config", str(cfg), "check-config"], capture_output=True, text=True)
    assert r.returncode != 0 and "subject_tag" in r.stderr and "line break" in r.stderr, r.stderr


def test_refused_recipients_are_in_the_message_log(gw, sink):
    gw.start()
    # One recipient refused (not a domain of ours), one accepted: the message goes on,
    # and the refusal has a log record of its own with the reply the client got.
    refused = send(gw.smtp, "alice@outside.test", ["nobody@elsewhere.test", "bob@example.com"],
                   message=mime("half refused"), helo="mail.outside.test")
    assert list(refused) == ["nobody@elsewhere.test"] and refused["nobody@elsewhere.test"][0] == 554
    sink.wait_count(1)
    # Every recipient refused: the transaction never reaches DATA.
    with smtplib.SMTP("127.0.0.1", gw.smtp, timeout=10) as s:
        s.ehlo("mail.outside.test")
        s.mail("alice@outside.test")
        code, text = s.rcpt("eve@elsewhere.test")
        assert code == 554, (code, text)
        s.rset()

    def refused():
        out = json.loads(gw.cli("log", "search", "--verdict", "reject", "--json").stdout)
        return len(out) == 2 and out
    records = wait_for(refused, what="two refusal records")
    by_rcpt = {r["recipients"][0]["address"]: r for r in records}
    assert sorted(by_rcpt) == ["eve@elsewhere.test", "nobody@elsewhere.test"]
    eve = by_rcpt["eve@elsewhere.test"]
    assert eve["sender"] == "alice@outside.test" and eve["direction"] == "inbound"
    assert eve["helo"] == "mail.outside.test" and eve["id"].endswith("X")
    assert eve["recipients"][0]["status"] == "rejected"
    assert eve["recipients"][0]["reply"].startswith(f"{code} "), eve
    # The delivered message's own record has only its accepted recipient.
    (sent,) = json.loads(gw.cli("log", "search", "--subject", "half refused", "--json").stdout)
    assert [r["address"] for r in sent["recipients"]] == ["bob@example.com"]
