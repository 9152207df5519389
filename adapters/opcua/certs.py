"""Self-signed OPC UA application instance certificates (client and, for tests, server).

OPC UA peers check that the URI in the certificate's SubjectAltName equals the ApplicationUri the
application announces (OPC 10000-4 §6.1.3, OPC 10000-6 §6.2.2); asyncua's client only warns when
they differ, and servers then refuse the session. So the certificate is always generated from the
application URI the adapter will announce, and :func:`certificate_application_uris` lets the adapter
check an existing certificate before connecting.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapters.base import AdapterError

CERT_DER = "cert.der"
CERT_PEM = "cert.pem"
KEY_PEM = "key.pem"


class CertificateError(AdapterError):
    """A certificate is missing, unreadable, or does not match the application URI."""


@dataclass(frozen=True, slots=True)
class CertificatePaths:
    """Where a generated pair lives: DER certificate (what asyncua sends), PEM copy, PEM key."""

    cert_der: Path
    cert_pem: Path
    key_pem: Path


def paths_in(out_dir: Path, prefix: str = "client_") -> CertificatePaths:
    return CertificatePaths(
        out_dir / f"{prefix}{CERT_DER}", out_dir / f"{prefix}{CERT_PEM}", out_dir / f"{prefix}{KEY_PEM}"
    )


def _san_entries(application_uri: str, hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def build_certificate(
    application_uri: str,
    hostnames: Sequence[str],
    *,
    server: bool = False,
    common_name: str = "symtwin",
    days: int = 3650,
    key_bits: int = 2048,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed RSA application instance certificate and its key.

    application_uri: goes into SubjectAltName as a URI; must equal the ApplicationUri the program announces.
    hostnames: DNS names or IP addresses added to SubjectAltName.
    server: add the serverAuth extended key usage (test servers); clients always get clientAuth.
    days: validity [d]. key_bits: RSA modulus size [bit] (2048 is the minimum of Basic256Sha256 and
    Aes128_Sha256_RsaOaep).
    """
    if not application_uri:
        raise CertificateError("application URI is empty; OPC UA servers reject certificates without one")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "symtwin"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between peers
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san_entries(application_uri, hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def write_certificate(cert: x509.Certificate, path: Path) -> None:
    """PEM when the file name ends in .pem, DER otherwise (what asyncua and most servers expect)."""
    encoding = serialization.Encoding.PEM if path.suffix.lower() == ".pem" else serialization.Encoding.DER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(encoding))


def write_private_key(key: rsa.RSAPrivateKey, path: Path) -> None:
    """Unencrypted PKCS#8 PEM, created owner-readable only before any byte lands in it."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def ensure_certificate(
    cert_path: Path, key_path: Path, application_uri: str, hostnames: Sequence[str]
) -> bool:
    """Generate the client pair at the configured paths when both are absent; True when generated.

    One of the two present without the other is an error to fix by hand (never silently replaced).
    """
    have_cert, have_key = cert_path.exists(), key_path.exists()
    if have_cert and have_key:
        return False
    if have_cert != have_key:
        present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
        raise CertificateError(
            f"{present} exists but {missing} does not; restore it or delete both and let them be regenerated"
        )
    cert, key = build_certificate(application_uri, hostnames)
    write_private_key(key, key_path)
    write_certificate(cert, cert_path)
    return True


def generate_certificate(
    out_dir: Path,
    application_uri: str,
    hostnames: Sequence[str],
    *,
    force: bool = False,
    server: bool = False,
    common_name: str = "symtwin",
    days: int = 3650,
    prefix: str = "client_",
) -> CertificatePaths:
    """Write a self-signed certificate (DER and PEM) and its PEM key into ``out_dir``.

    An existing pair raises :class:`CertificateError` unless ``force``.
    """
    paths = paths_in(out_dir, prefix)
    existing = [p for p in (paths.cert_der, paths.cert_pem, paths.key_pem) if p.exists()]
    if existing and not force:
        raise CertificateError(f"{existing[0]} already exists; pass --force to overwrite it")
    cert, key = build_certificate(
        application_uri, hostnames, server=server, common_name=common_name, days=days
    )
    write_private_key(key, paths.key_pem)
    write_certificate(cert, paths.cert_der)
    write_certificate(cert, paths.cert_pem)
    return paths


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read certificate {path}: {exc}") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"{path} is not a PEM or DER X.509 certificate: {exc}") from exc


def certificate_application_uris(cert: x509.Certificate) -> list[str]:
    """The URIs in the certificate's SubjectAltName (empty when it has none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.value.get_values_for_type(x509.UniformResourceIdentifier)]
