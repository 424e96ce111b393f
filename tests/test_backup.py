"""Backup and restore with the real binary: an archive of a running gateway (queued mail
while the downstream server is down, a quarantined message, a DKIM key, a user) restored
into a fresh data directory, where a new gateway delivers the queued mail, still holds the
quarantined message, lets the user log in and signs with the same key; damaged archives,
a newer format and wrong passphrases refused without touching the target; an encrypted
round trip; an SFTP round trip against a private sshd; scheduled backups with retention.
On SQLite, or on PostgreSQL with PORTCULLIS_TEST_STORE=postgres (each gateway its own
database)."""

import gzip
import io
import json
import smtplib
import ssl
import tarfile

from peers import Gateway, Sink, send, wait_for
from peers.sshd import Sshd
from test_dkim import Zone, signatures, tag, verdicts

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
DELIVERY = "[delivery]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n"


def submit(g, subject):
    """Mail from alice, authenticated on the implicit-TLS submission port."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", g.submissions, context=ctx, timeout=30) as s:
        s.login("alice@example.com", "correct horse")
        s.sendmail("alice@example.com", ["bob@example.com"],
                   (f"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
                    f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '.')}@example.com>\r\n"
                    f"\r\nHello Bob.\r\n").encode())


def populated(tmp_path, sink):
    """Gateway A routed to a sink that is not running: a user, a DKIM key, two queued
    messages (one signed) and one quarantined. Returns (gateway, DNS zone of the key)."""
    a = Gateway(tmp_path / "a", extra_config=DELIVERY)
    a.cli("domain", "add", "example.com", "--route", f"127.0.0.1:{sink.port}")
    a.cli("user", "add", "alice@example.com", input="correct horse\n")
    zone = Zone()
    zone.publish(a.cli("dkim", "generate", "example.com", "--algorithm", "ed25519",
                       "--selector", "bk1").stdout)
    a.start()
    send(a.smtp, "carol@outside.test", ["bob@example.com"], subject="queued while down")
    send(a.smtp, "spam@outside.test", ["bob@example.com"], subject="offer",
         body=f"Buy now\r\n{GTUBE}\r\n")
    submit(a, "signed before")
    wait_for(lambda: len(a.queue_ids()) == 2, what="two messages queued")
    held = json.loads(a.cli("quarantine", "list", "--json").stdout)
    assert [h["subject"] for h in held] == ["offer"], held
    return a, zone


def raw_signed(path):
    """The message as the gateway sent it, from its DKIM-Signature on (smtp-sink writes
    its own headers first and bare LF line ends)."""
    raw = path.read_bytes()
    return raw[raw.index(b"DKIM-Signature:"):].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def tree(path):
    """Every file under `path` with its bytes (nothing if it does not exist)."""
    if not path.exists():
        return {}
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_restored_gateway_delivers_signs_and_logs_in(tmp_path):
    sink = Sink(tmp_path / "sink")
    a, zone = populated(tmp_path, sink)
    archive = tmp_path / "gw.tar.gz"
    try:
        r = a.cli("backup", "--to", str(archive))
        # Restoring under a running gateway is refused.
        busy = a.cli("restore", str(archive), "--force", check=False)
        assert busy.returncode != 0 and "stop it before restoring" in busy.stderr, busy.stderr
    finally:
        a.stop()
    assert "DKIM private keys" in r.stderr and "not encrypted" in r.stderr, r.stderr
    assert "2 queued messages" in r.stdout and "the configuration file" in r.stdout, r.stdout
    with tarfile.open(archive) as t:
        names = t.getnames()
        manifest = json.load(t.extractfile("manifest.json"))
    assert names[0] == "manifest.json"
    assert manifest["format"] == 1 and manifest["engine"] in ("sqlite", "postgres")
    assert {"config/portcullis.toml", "store/dkim_keys.jsonl", "store/users.jsonl",
            "store/quarantine_messages.jsonl", "store/messages.jsonl"} <= {e["path"] for e in manifest["entries"]}
    assert all(len(e["sha256"]) == 64 for e in manifest["entries"])

    b = Gateway(tmp_path / "b", extra_config=DELIVERY)
    out = b.cli("restore", str(archive)).stdout
    assert "2 queued messages" in out, out
    assert (b.dir / "data" / "portcullis.toml.restored").read_bytes() == a.config.read_bytes()
    held = json.loads(b.cli("quarantine", "list", "--json").stdout)
    assert [(h["subject"], h["class"]) for h in held] == [("offer", "spam")], held
    # Both ends are in the audit logs: the backup on the source (after its snapshot), the
    # restore on the target, above the source's history (the console's first account too).
    audit = lambda g: [e["action"] for e in json.loads(g.cli("audit", "list", "--json").stdout)]
    assert audit(a)[0] == "backup.create"
    restored = audit(b)
    assert restored[0] == "backup.restore" and "account.bootstrap" in restored, restored
    # A second restore onto the now used store is refused.
    again = b.cli("restore", str(archive), check=False)
    assert again.returncode != 0 and "--force" in again.stderr, again.stderr

    with sink:
        b.start()
        try:
            files = sink.wait_count(2, timeout=30)
            subjects = sorted(m["Subject"] for m in sink.messages())
            assert subjects == ["queued while down", "signed before"], subjects
            # The user logs in on the restored gateway and its mail is signed with the
            # restored key: the same selector, verified by the record published before.
            submit(b, "signed after")
            files = sink.wait_count(3, timeout=30)
        finally:
            b.stop()
    by_subject = {m["Subject"]: f for m, f in zip(sink.messages(), files)}
    for subject in ("signed before", "signed after"):
        signed = raw_signed(by_subject[subject])
        assert [tag(s, "s") for s in signatures(signed)] == ["bk1"], subject
        assert verdicts(signed, zone) == [True], subject
    assert b.queue_ids() == []


def test_damaged_archives_and_newer_formats_change_nothing(tmp_path):
    g = Gateway(tmp_path / "a")
    g.cli("domain", "add", "example.com", "--route", "127.0.0.1:9")
    g.cli("user", "add", "alice@example.com", input="correct horse\n")
    archive = tmp_path / "a.tar.gz"
    g.cli("backup", "--to", str(archive))
    good = archive.read_bytes()

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    newer = io.BytesIO()
    with tarfile.open(fileobj=newer, mode="w:gz") as t, tarfile.open(archive) as old:
        manifest = json.load(old.extractfile("manifest.json"))
        manifest["format"] = 99
        manifest["gateway_version"] = "9.0.0"
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        for member in old.getmembers()[1:]:
            t.addfile(member, old.extractfile(member))
    cases = {
        "flipped": (bytes(flipped), "damaged or truncated"),
        "truncated": (good[: len(good) - 40], "damaged or truncated"),
        "newer": (newer.getvalue(), "format version 99"),
        "not gzip": (b"hello" * 100, "not a Portcullis backup"),
        "empty gzip": (gzip.compress(b""), "damaged or truncated"),
    }
    target = Gateway(tmp_path / "b")
    target.cli("domain", "add", "other.test", "--route", "127.0.0.1:9")
    for name, (data, expect) in cases.items():
        bad = tmp_path / f"{name}.tar.gz"
        bad.write_bytes(data)
        for t in (Gateway(tmp_path / f"fresh-{name.replace(' ', '-')}"), target):
            before = tree(t.dir / "data")
            r = t.cli("restore", str(bad), "--force", check=False)
            assert r.returncode != 0, (name, r.stdout)
            assert expect in r.stderr, (name, r.stderr)
            assert tree(t.dir / "data") == before, name
    # The used target still has its own policy, and a good archive still restores.
    assert "other.test" in target.cli("domain", "list").stdout
    target.cli("restore", str(archive), "--force")
    listed = target.cli("domain", "list").stdout
    assert "example.com" in listed and "other.test" not in listed


def test_encrypted_round_trip_and_wrong_passphrase(tmp_path):
    g = Gateway(tmp_path / "a")
    g.cli("domain", "add", "example.com", "--route", "127.0.0.1:9")
    g.cli("dkim", "generate", "example.com", "--algorithm", "ed25519", "--selector", "enc1")
    secret = tmp_path / "pass"
    secret.write_text("correct horse battery staple\n")
    archive = tmp_path / "a.tar.gz.age"
    r = g.cli("backup", "--to", str(archive), "--passphrase-file", str(secret), "--without-log")
    assert "not encrypted" not in r.stderr and "without the message log" in r.stdout
    assert archive.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert b"enc1" not in archive.read_bytes()

    b = Gateway(tmp_path / "b")
    r = b.cli("restore", str(archive), check=False)
    assert r.returncode != 0 and "--passphrase-file" in r.stderr, r.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("incorrect horse\n")
    r = b.cli("restore", str(archive), "--passphrase-file", str(wrong), check=False)
    assert r.returncode != 0 and "wrong passphrase" in r.stderr, r.stderr
    assert tree(b.dir / "data") == {}
    b.cli("restore", str(archive), "--passphrase-file", str(secret))
    keys = json.loads(b.cli("dkim", "list", "--json").stdout)
    assert [(k["selector"], k["state"]) for k in keys] == [("enc1", "active")]


def test_sftp_round_trip(tmp_path):
    g = Gateway(tmp_path / "a")
    g.cli("domain", "add", "example.com", "--route", "127.0.0.1:9")
    remote = tmp_path / "remote"
    remote.mkdir()
    with Sshd(tmp_path / "sshd") as sshd:
        url = sshd.url(f"{remote}/gw.tar.gz")
        ssh = ["--ssh-config", str(sshd.client_config)]
        g.cli("backup", "--to", url, *ssh)
        assert [p.name for p in remote.iterdir()] == ["gw.tar.gz"]
        b = Gateway(tmp_path / "b")
        out = b.cli("restore", url, *ssh).stdout
        assert "restored the backup" in out
        assert "example.com" in b.cli("domain", "list").stdout
        # Without the client configuration the server's key is unknown: a clear refusal.
        r = Gateway(tmp_path / "c").cli("restore", sshd.url(f"{remote}/gw.tar.gz"),
                                        "--ssh-key", str(sshd.client_key), check=False)
        assert r.returncode != 0 and "sftp" in r.stderr, r.stderr

        # Scheduled backups to the server, the older archives there beyond `keep` removed.
        for name in ("portcullis-20250101T030000Z.tar.gz", "portcullis-20250102T030000Z.tar.gz"):
            (remote / name).write_bytes(b"old")
        s = Gateway(tmp_path / "s", extra_config=(
            f'[backup]\nto = "{sshd.url(str(remote))}"\nkeep = 2\n'
            f'ssh_config = "{sshd.client_config}"\n'))
        s.cli("domain", "add", "example.org", "--route", "127.0.0.1:9")
        s.start()
        try:
            def ours():
                return sorted(p.name for p in remote.iterdir() if p.name.startswith("portcullis-"))
            wait_for(lambda: len(ours()) == 2 and ours()[0] == "portcullis-20250102T030000Z.tar.gz",
                     30, "a new archive on the server and one old kept")
        finally:
            s.stop()
        assert (remote / "gw.tar.gz").exists()
        out = Gateway(tmp_path / "d").cli("restore", sshd.url(f"{remote}/{ours()[1]}"), *ssh).stdout
        assert "restored the backup of gw.test" in out


def test_scheduled_backups_keep_the_newest(tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    old = ["portcullis-20250101T030000Z.tar.gz", "portcullis-20250102T030000Z.tar.gz",
           "portcullis-20250103T030000Z.tar.gz"]
    for name in old:
        (backups / name).write_bytes(b"old")
    (backups / "notes.txt").write_text("not ours")
    g = Gateway(tmp_path / "a", extra_config=f'[backup]\nto = "{backups}"\nschedule_hours = 24\nkeep = 2\n')
    g.cli("domain", "add", "example.com", "--route", "127.0.0.1:9")
    g.start()
    try:
        def ours():
            return sorted(p.name for p in backups.iterdir() if p.name.startswith("portcullis-"))
        wait_for(lambda: len(ours()) == 2 and ours()[0] == old[-1], 30, "a new archive and one old kept")
        new = ours()[1]
        assert new > old[-1] and new.endswith(".tar.gz")
        assert (backups / "notes.txt").exists()
        wait_for(lambda: "backup written" in g.log_text() and "old backups removed" in g.log_text(), 10,
                 "the run logged")
    finally:
        g.stop()
    b = Gateway(tmp_path / "b")
    b.cli("restore", str(backups / new))
    assert "example.com" in b.cli("domain", "list").stdout
