"""Client-side OPC UA security: our certificate, the server's certificate against a trust list.

asyncua does not validate the server certificate unless told to (its ``certificate_validator``
defaults to None), so the adapter checks it itself before any session is created: the server's
certificate, as announced in GetEndpoints, must be byte-identical to one in the trust directory or
be issued by a CA certificate found there, and must be within its validity period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from pathlib import Path

from asyncua import ua
from asyncua.crypto import security_policies
from asyncua.crypto.truststore import TrustStore
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.base import AdapterError
from adapters.opcua.certs import (
    CertificateError,
    certificate_application_uris,
    load_certificate,
)
from adapters.opcua.config import OpcUaConfigError, OpcUaSecurity, SecurityMode, SecurityPolicy

log = logging.getLogger(__name__)

POLICY_CLASSES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.AES128_SHA256_RSAOAEP: security_policies.SecurityPolicyAes128Sha256RsaOaep,
}
MODES: dict[SecurityMode, ua.MessageSecurityMode] = {
    SecurityMode.NONE: ua.MessageSecurityMode.None_,
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}


class SecurityRefused(AdapterError):
    """The server cannot be talked to securely as configured (untrusted certificate, no such endpoint)."""


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def first_certificate(der_chain: bytes) -> bytes:
    """The leading certificate of a DER blob that may carry the issuer chain after it (ASN.1 SEQUENCE)."""
    if len(der_chain) < 4 or der_chain[0] != 0x30:
        return der_chain
    length_byte = der_chain[1]
    if length_byte < 0x80:
        return der_chain[: 2 + length_byte]
    n = length_byte & 0x7F
    length = int.from_bytes(der_chain[2 : 2 + n], "big")
    return der_chain[: 2 + n + length]


def check_client_certificate(sec: OpcUaSecurity) -> None:
    """The configured client certificate exists and names the configured application URI."""
    assert sec.cert_path is not None and sec.key_path is not None
    if not sec.key_path.exists():
        raise CertificateError(
            f"client key {sec.key_path} is missing (the certificate {sec.cert_path} is there)"
        )
    cert = load_certificate(sec.cert_path)
    uris = certificate_application_uris(cert)
    if sec.application_uri not in uris:
        raise OpcUaConfigError(
            f"client certificate {sec.cert_path} carries application URI(s) {uris or 'none'}, but the config "
            f"announces {sec.application_uri!r}; servers refuse that. Regenerate it with "
            f"`symtwin certs --application-uri {sec.application_uri} --force` or fix application_uri"
        )
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError(
            f"client certificate {sec.cert_path} is valid only from {cert.not_valid_before_utc} to "
            f"{cert.not_valid_after_utc}; regenerate it with `symtwin certs --force`"
        )


def _trusted_certificates(trust_dir: Path) -> list[tuple[Path, x509.Certificate]]:
    found: list[tuple[Path, x509.Certificate]] = []
    if not trust_dir.is_dir():
        return found
    for path in sorted(trust_dir.iterdir()):
        if path.suffix.lower() in (".der", ".pem", ".crt", ".cer"):
            try:
                found.append((path, load_certificate(path)))
            except CertificateError as exc:
                log.warning("ignoring unreadable file in trust dir: %s", exc)
    return found


async def check_server_certificate(der: bytes, trust_dir: Path) -> None:
    """Refuse a server certificate that is not trusted or not currently valid."""
    if not der:
        raise SecurityRefused("the server sent no certificate for a secured endpoint")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise SecurityRefused(f"the server certificate cannot be parsed: {exc}") from exc
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SecurityRefused(
            f"the server certificate (SHA-256 {fingerprint(der)}) is not valid now "
            f"({cert.not_valid_before_utc} .. {cert.not_valid_after_utc})"
        )
    trusted = _trusted_certificates(trust_dir)
    if any(c.public_bytes(Encoding.DER) == der for _, c in trusted):
        return
    # Not pinned directly: accept it when a CA certificate in the trust dir issued it.
    cas = [c for _, c in trusted if _is_ca(c)]
    if cas:
        store = TrustStore([trust_dir], [])
        await store.load_trust()
        # TrustStore logs a traceback when verification fails; that failure is our normal refusal path.
        ts_log = logging.getLogger("asyncua.crypto.truststore")
        old = ts_log.level
        ts_log.setLevel(logging.CRITICAL)
        try:
            if store.is_trusted(cert):
                return
        finally:
            ts_log.setLevel(old)
    raise SecurityRefused(
        f"the server certificate (subject {cert.subject.rfc4514_string()}, SHA-256 {fingerprint(der)}) is not "
        f"in the trust list {trust_dir}; if you trust this server, copy its certificate into that folder"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def select_endpoint(
    endpoints: list[ua.EndpointDescription], policy: SecurityPolicy, mode: SecurityMode
) -> ua.EndpointDescription:
    uri = (
        POLICY_CLASSES[policy].URI
        if policy is not SecurityPolicy.NONE
        else security_policies.SecurityPolicyNone.URI
    )
    want_mode = MODES[mode]
    for ep in endpoints:
        if ep.SecurityPolicyUri == uri and ep.SecurityMode == want_mode:
            return ep
    offered = sorted(
        {f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}/{ep.SecurityMode.name}" for ep in endpoints}
    )
    raise SecurityRefused(
        f"the server offers no endpoint with {policy.value}/{mode.value}; it offers {', '.join(offered)}"
    )
