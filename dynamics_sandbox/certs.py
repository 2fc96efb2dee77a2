"""TLS certificate of the sandbox: a small CA that signs a loopback server certificate.

Clients trust `cert.pem` (the CA). A CA plus a leaf certificate, each with the key
identifier, basic constraints and key usage extensions, passes the strict X.509 checks
that Python 3.13 turns on by default (ssl.VERIFY_X509_STRICT), which reject a
self-signed leaf without an authority key identifier.
"""

import datetime
import ipaddress
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:
    import fcntl
except ImportError:  # Windows: two first starts at once may race, which is harmless there.
    fcntl = None

logger = logging.getLogger(__name__)

CA_CERT_NAME = "cert.pem"
SERVER_CERT_NAME = "server-cert.pem"
SERVER_KEY_NAME = "server-key.pem"

LOOPBACK_DNS_NAMES = ["localhost"]
LOOPBACK_ADDRESSES = ["127.0.0.1", "::1"]

CA_LIFETIME = datetime.timedelta(days=3650)
# 397 days is the longest leaf validity that browsers accept.
SERVER_LIFETIME = datetime.timedelta(days=397)
# A server certificate with less validity left than this is replaced at start.
RENEW_BEFORE = datetime.timedelta(days=7)


@contextmanager
def _locked(data_dir):
    """Serialize certificate creation between processes that share a data folder."""
    with open(data_dir / ".cert.lock", "w") as lock_file:
        if fcntl is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def ensure_certificate(data_dir):
    """Create the CA and server certificate in `data_dir` unless valid ones exist.

    Return (ca_cert_path, server_cert_path, server_key_path).
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = (data_dir / CA_CERT_NAME, data_dir / SERVER_CERT_NAME, data_dir / SERVER_KEY_NAME)
    with _locked(data_dir):
        if not _is_usable(*paths):
            _generate(*paths)
            logger.info("Created the sandbox CA certificate %s", paths[0])
    return paths


def _is_usable(ca_path, cert_path, key_path):
    if not (ca_path.is_file() and cert_path.is_file() and key_path.is_file()):
        return False
    try:
        server_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except ValueError:
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    if server_cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    return server_cert.issuer == ca_cert.subject


def _write(path, data, private=False):
    temporary = path.with_suffix(path.suffix + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    descriptor = os.open(temporary, flags, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as output:
        output.write(data)
    os.replace(temporary, path)


def _generate(ca_path, cert_path, key_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dynamics sandbox local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    alternative_names = [x509.DNSName(name) for name in LOOPBACK_DNS_NAMES] + [
        x509.IPAddress(ipaddress.ip_address(address)) for address in LOOPBACK_ADDRESSES
    ]
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + SERVER_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    # The CA key is not kept: a new server certificate comes with a new CA.
    _write(key_path, server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ), private=True)
    _write(cert_path, server_cert.public_bytes(serialization.Encoding.PEM))
    _write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
