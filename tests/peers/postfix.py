"""A private Postfix instance for tests: its own config, queue and data directories under
a temporary directory, listening on a loopback port, relaying everything to one next
hop. It never touches the system instance's queue."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from peers.common import free_port, require, wait_port


class Postfix:
    def __init__(self, workdir, relayhost, extra_main=""):
        require("postfix")
        # Postfix's own users must reach the queue: pytest's temporary directories are
        # private to root, so the instance lives in a directory of its own under /tmp.
        self.dir = Path(tempfile.mkdtemp(prefix="portcullis-postfix-"))
        self.dir.chmod(0o755)
        self.workdir = Path(workdir)
        self.etc = self.dir / "etc"
        self.port = free_port()
        for d in ("etc", "spool", "lib"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir / "lib", user="postfix")
        master_cf = Path("/etc/postfix/master.cf")
        if not master_cf.exists():
            master_cf = Path("/usr/share/postfix/master.cf.dist")
        master = master_cf.read_text().splitlines()
        out = []
        for line in master:
            fields = line.split()
            if fields and not line.startswith((" ", "\t", "#")) and len(fields) >= 8:
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"127.0.0.1:{self.port}"
                fields[4] = "n"  # no chroot: the queue is in a temporary directory
                line = " ".join(fields)
            out.append(line)
        (self.etc / "master.cf").write_text("\n".join(out) + "\n")
        (self.etc / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {self.dir / 'spool'}
data_directory = {self.dir / 'lib'}
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.test
mydomain = pf.test
myorigin = pf.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = {relayhost}
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {self.dir / 'maillog'}
maillog_file_prefixes = {self.dir}
alias_maps =
alias_database =
local_recipient_maps =
{extra_main}
""")
        shutil.copy("/etc/postfix/dynamicmaps.cf", self.etc / "dynamicmaps.cf")

    def run(self, *args, check=True):
        r = subprocess.run([require("postfix"), "-c", str(self.etc), *args],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {r.stdout}{r.stderr}")
        return r

    def start(self):
        self.run("check")
        self.run("start")
        wait_port(self.port)
        return self

    def stop(self):
        self.run("stop", check=False)
        time.sleep(0.2)
        # Keep the log with the test's files, then remove the instance.
        if (self.dir / "maillog").exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.dir / "maillog", self.workdir / "maillog")
        shutil.rmtree(self.dir, ignore_errors=True)

    def sendmail(self, sender, rcpt, message: bytes):
        r = subprocess.run(["/usr/sbin/sendmail", "-C", str(self.etc), "-f", sender, rcpt],
                           input=message, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"sendmail: {r.stderr!r}")

    def maillog(self):
        p = self.dir / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""
