"""Keys and certificates for the tests, made by openssl: test CAs (a root, or an
intermediate under another CA) issuing server certificates, self-signed certificates,
the SubjectPublicKeyInfo of a certificate (DANE), and DKIM keys with their DNS form."""

import base64
import hashlib
import subprocess

from peers.common import require

EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
CA_EXTENSIONS = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"


def openssl(*args, input=None):
    """Runs openssl; its standard output."""
    return subprocess.run([require("openssl"), *args], input=input, check=True,
                          capture_output=True, timeout=60).stdout


class Pki:
    """A test CA (`ca`, `ca_key`) in directory `d` and the certificates it issues: a root
    (self-signed) or, given `parent`, an intermediate that the parent CA signed."""

    def __init__(self, d, subject="Portcullis Test CA", parent=None):
        self.dir = d
        self.parent = parent
        d.mkdir(parents=True, exist_ok=True)
        self.ca = d / "ca.pem"
        self.ca_key = d / "ca.key"
        if parent is None:
            openssl("req", "-x509", *EC, "-keyout", str(self.ca_key), "-out", str(self.ca),
                    "-days", "2", "-subj", f"/CN={subject}",
                    *(x for ext in CA_EXTENSIONS.splitlines() for x in ("-addext", ext)))
        else:
            parent.sign(self.ca_key, self.ca, d / "ca.csr", d / "ca.ext", f"/CN={subject}",
                        CA_EXTENSIONS)

    def sign(self, key, cert, csr, extfile, subject, extensions):
        """A new key and a certificate for it, signed by this CA."""
        extfile.write_text(extensions)
        openssl("req", *EC, "-keyout", str(key), "-out", str(csr), "-subj", subject)
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile))

    def intermediate(self, subject):
        """An intermediate CA signed by this one, in a directory of its own."""
        return Pki(self.dir / "intermediate", subject, parent=self)

    def issue(self, name, chain=False):
        """A server certificate for `name` and its key: (cert, key). With `chain`, the
        certificate file also holds the intermediate CAs up to the root (not the root)."""
        key, csr, cert, ext = (self.dir / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
        self.sign(key, cert, csr, ext, f"/CN={name}",
                  f"subjectAltName=DNS:{name}\nbasicConstraints=CA:FALSE\n"
                  "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        if not chain:
            return cert, key
        pems, ca = [cert.read_text()], self
        while ca.parent is not None:
            pems.append(ca.ca.read_text())
            ca = ca.parent
        full = self.dir / f"{name}.chain.pem"
        full.write_text("".join(pems))
        return full, key

    def self_signed(self, name):
        """A self-signed certificate for `name` and its key: (cert, key)."""
        key, cert = self.dir / f"self-{name}.key", self.dir / f"self-{name}.pem"
        openssl("req", "-x509", *EC, "-keyout", str(key), "-out", str(cert), "-days", "2",
                "-subj", f"/CN={name}",
                "-addext", f"subjectAltName=DNS:{name}",
                "-addext", "basicConstraints=critical,CA:FALSE")
        return cert, key


def spki_der(cert_pem):
    """The certificate's SubjectPublicKeyInfo, DER."""
    pem = openssl("x509", "-in", str(cert_pem), "-noout", "-pubkey")
    return openssl("pkey", "-pubin", "-outform", "DER", input=pem)


def spki_sha256(cert_pem):
    return hashlib.sha256(spki_der(cert_pem)).hexdigest()


def dkim_key(path, algorithm="rsa", bits=1024):
    """A new private key (PEM) at `path`, readable by its owner only; returns the public
    key as a DKIM record's p= value: base64 of the DER for RSA, of the bare 32-byte key
    for Ed25519 (RFC 8463)."""
    if algorithm == "rsa":
        openssl("genrsa", "-out", str(path), str(bits))
        public = openssl("rsa", "-in", str(path), "-pubout", "-outform", "DER")
    else:
        openssl("genpkey", "-algorithm", "ed25519", "-out", str(path))
        # The DER's last bytes are the bare key.
        public = openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")[-32:]
    path.chmod(0o600)
    return base64.b64encode(public).decode()
