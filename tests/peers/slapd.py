"""OpenLDAP's slapd from Debian's packages, a private instance: its configuration, a
database loaded by slapadd and a TLS certificate from a test CA, all under a temporary
directory, listening on loopback only (plain/StartTLS on one port, LDAPS on another).

The tree (dc=example,dc=org):
    ou=people   alice (uid alice, mail alice@example.org, alias al@example.org, "Alice Liddell"),
                bob (bob@example.org), carol (carol@example.org, disabled: userAccountControl 514)
    ou=groups   eng (alice), staff (eng, bob), all (staff): alice is in all three by nesting
    ou=services portcullis: the service account the gateway searches as
Passwords: alice `alice pw`, bob `bob pw`, carol `carol pw`, the service account `svc pw`."""

import os
import subprocess
import time

from peers.common import free_port, require, stop_process, wait_port

BASE = "dc=example,dc=org"
SERVICE_DN = f"cn=portcullis,ou=services,{BASE}"
SERVICE_PASSWORD = "svc pw"

# userAccountControl is Active Directory's; a private test schema gives it to slapd so the
# disabled-account check can run against a real server (OIDs under a test-only arc).
TEST_SCHEMA = """
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'userAccountControl'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'portcullisTestAccount' SUP top AUXILIARY
    MAY userAccountControl )
"""


def person(uid, name, mail, password, extra=""):
    return f"""dn: uid={uid},ou=people,{BASE}
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
objectClass: portcullisTestAccount
uid: {uid}
cn: {name}
sn: {name.split()[-1]}
displayName: {name}
mail: {mail}
userPassword: {password}
{extra}
"""


TREE = f"""dn: {BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{BASE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{BASE}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: portcullis
userPassword: {SERVICE_PASSWORD}

""" + person("alice", "Alice Liddell", "alice@example.org", "alice pw",
             "mailLocalAddress: al@example.org\nuserAccountControl: 512") + "\n" + \
    person("bob", "Bob Example", "bob@example.org", "bob pw") + "\n" + \
    person("carol", "Carol Disabled", "carol@example.org", "carol pw",
           "userAccountControl: 514") + f"""
dn: cn=eng,ou=groups,{BASE}
objectClass: groupOfNames
cn: eng
member: uid=alice,ou=people,{BASE}

dn: cn=staff,ou=groups,{BASE}
objectClass: groupOfNames
cn: staff
member: cn=eng,ou=groups,{BASE}
member: uid=bob,ou=people,{BASE}

dn: cn=all,ou=groups,{BASE}
objectClass: groupOfNames
cn: all
member: cn=staff,ou=groups,{BASE}
"""


class Slapd:
    """A private slapd: `port` (ldap://, StartTLS offered) and `tls_port` (ldaps://),
    certificate for 127.0.0.1 from `pki`; `ca` is the CA file that verifies it."""

    def __init__(self, d, pki):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.slapd = require("slapd")
        self.slapadd = require("slapadd")
        self.port = free_port()
        self.tls_port = free_port()
        self.ca = pki.ca
        self.cert, self.key = d / "slapd.pem", d / "slapd.key"
        pki.sign(self.key, self.cert, d / "slapd.csr", d / "slapd.ext", "/CN=127.0.0.1",
                 "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                 "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        (d / "test.schema").write_text(TEST_SCHEMA)
        (d / "db").mkdir(exist_ok=True)
        self.conf = d / "slapd.conf"
        self.conf.write_text(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
include {d / 'test.schema'}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d / 'slapd.pid'}
argsfile {d / 'slapd.args'}
TLSCACertificateFile {self.ca}
TLSCertificateFile {self.cert}
TLSCertificateKeyFile {self.key}
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
rootpw admin-secret
directory {d / 'db'}
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
""")
        (d / "tree.ldif").write_text(TREE)
        r = subprocess.run([self.slapadd, "-f", str(self.conf), "-l", str(d / "tree.ldif")],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"slapadd failed: {r.stderr}")
        self.proc = None
        self.log = d / "slapd.log"

    def start(self):
        logf = open(self.log, "a")
        # -d keeps slapd in the foreground (a child of the test, never a daemon).
        self.proc = subprocess.Popen(
            [self.slapd, "-f", str(self.conf), "-d", "0",
             "-h", f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"],
            stdout=logf, stderr=logf)
        wait_port(self.port, proc=self.proc)
        wait_port(self.tls_port, proc=self.proc)
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def url(self, mode="plain"):
        return (f"ldaps://127.0.0.1:{self.tls_port}" if mode == "ldaps"
                else f"ldap://127.0.0.1:{self.port}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
