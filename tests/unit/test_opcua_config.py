"""OPC UA adapter parameters: validation without network, certificate generation, `symtwin certs`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from asyncua import ua
from cryptography import x509

from adapters.base import Quality, Sample
from adapters.opcua.certs import (
    CertificateError,
    certificate_application_uris,
    ensure_certificate,
    generate_certificate,
    load_certificate,
)
from adapters.opcua.client import OpcUaAdapter
from adapters.opcua.config import (
    DataType,
    Direction,
    OpcUaConfig,
    OpcUaConfigError,
    OpcUaSecurity,
    OpcUaTag,
    SecurityMode,
    SecurityPolicy,
)
from adapters.opcua.security import check_client_certificate, first_certificate
from adapters.tagmap import TagBinding
from symtwin.commands import certs as certs_cmd

NONE = OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.NONE)


def test_security_none_must_be_explicit_on_both_fields() -> None:
    with pytest.raises(OpcUaConfigError, match="policy None goes only with"):
        OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.SIGN_AND_ENCRYPT)
    with pytest.raises(OpcUaConfigError, match="policy None goes only with"):
        OpcUaSecurity(SecurityPolicy.BASIC256SHA256, SecurityMode.NONE)


def test_default_security_is_encrypted_and_needs_paths_and_trust() -> None:
    with pytest.raises(OpcUaConfigError, match="cert_path and key_path"):
        OpcUaSecurity()
    with pytest.raises(OpcUaConfigError, match="trust_dir"):
        OpcUaSecurity(cert_path=Path("c.der"), key_path=Path("k.pem"))
    sec = OpcUaSecurity(cert_path=Path("c.der"), key_path=Path("k.pem"), trust_dir=Path("t"))
    assert sec.policy is SecurityPolicy.BASIC256SHA256 and sec.mode is SecurityMode.SIGN_AND_ENCRYPT


def test_password_is_not_in_repr() -> None:
    sec = OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.NONE, username="op", password="hunter2")
    assert "hunter2" not in repr(sec)
    with pytest.raises(OpcUaConfigError, match="both username and password"):
        OpcUaSecurity(SecurityPolicy.NONE, SecurityMode.NONE, username="op")


def test_tag_validation() -> None:
    with pytest.raises(OpcUaConfigError, match="node id"):
        OpcUaTag("t", "Boiler.Flow", DataType.DOUBLE)
    with pytest.raises(OpcUaConfigError, match="deadband"):
        OpcUaTag("t", "ns=2;s=X", DataType.DOUBLE, deadband=-1)
    with pytest.raises(OpcUaConfigError, match="Boolean"):
        OpcUaTag("t", "ns=2;s=X", DataType.BOOLEAN, deadband=0.5)
    with pytest.raises(OpcUaConfigError, match="scale"):
        OpcUaTag("t", "ns=2;s=X", DataType.DOUBLE, scale=0.0)
    t = OpcUaTag("t", "ns=2;s=X", DataType.DOUBLE, scale=1e5, offset=0.0)  # bar → Pa
    assert t.to_si(10.0) == 1e6
    assert t.from_si(t.to_si(3.5)) == pytest.approx(3.5)


def test_data_type_parse() -> None:
    assert DataType.parse("Float") is DataType.FLOAT
    assert DataType.parse("uint16") is DataType.UINT16
    with pytest.raises(OpcUaConfigError, match="unknown OPC UA data type"):
        DataType.parse("Real")


def test_config_validation() -> None:
    tag = OpcUaTag("a", "ns=2;s=A", DataType.DOUBLE)
    with pytest.raises(OpcUaConfigError, match=r"opc\.tcp"):
        OpcUaConfig("http://x", (tag,), security=NONE)
    with pytest.raises(OpcUaConfigError, match="bound twice"):
        OpcUaConfig("opc.tcp://h:4840", (tag, tag), security=NONE)
    with pytest.raises(OpcUaConfigError, match="watchdog_period_s"):
        OpcUaConfig("opc.tcp://h:4840", (tag,), security=NONE, watchdog_period_s=0)


def test_generated_certificate_carries_uri_hosts_and_usages(tmp_path: Path) -> None:
    paths = generate_certificate(tmp_path, "urn:acme:symtwin", ["edge01", "10.0.0.5"])
    cert = load_certificate(paths.cert_der)
    assert load_certificate(paths.cert_pem) == cert
    assert certificate_application_uris(cert) == ["urn:acme:symtwin"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge01"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and ku.data_encipherment and ku.content_commitment
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=3000)
    assert stat.S_IMODE(os.stat(paths.key_pem).st_mode) == 0o600
    assert (
        first_certificate(paths.cert_der.read_bytes() + b"\x30\x03\x02\x01\x00")
        == paths.cert_der.read_bytes()
    )


def test_existing_certificate_is_not_overwritten_without_force(tmp_path: Path) -> None:
    first = generate_certificate(tmp_path, "urn:a", ["h"])
    before = first.cert_der.read_bytes()
    with pytest.raises(CertificateError, match="already exists"):
        generate_certificate(tmp_path, "urn:b", ["h"])
    assert first.cert_der.read_bytes() == before
    generate_certificate(tmp_path, "urn:b", ["h"], force=True)
    assert certificate_application_uris(load_certificate(first.cert_der)) == ["urn:b"]


def test_ensure_certificate_generates_once_and_refuses_half_pairs(tmp_path: Path) -> None:
    cert, key = tmp_path / "pki" / "c.der", tmp_path / "pki" / "k.pem"
    assert ensure_certificate(cert, key, "urn:x", ["h"]) is True
    assert ensure_certificate(cert, key, "urn:x", ["h"]) is False
    key.unlink()
    with pytest.raises(CertificateError, match="does not"):
        ensure_certificate(cert, key, "urn:x", ["h"])


def test_client_certificate_must_match_application_uri(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.der", tmp_path / "k.pem"
    ensure_certificate(cert, key, "urn:other", ["h"])
    sec = OpcUaSecurity(cert_path=cert, key_path=key, trust_dir=tmp_path, application_uri="urn:symtwin:edge")
    with pytest.raises(OpcUaConfigError, match="urn:other"):
        check_client_certificate(sec)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    certs_cmd.add_arguments(parser)
    return parser.parse_args(argv)


def test_certs_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs_cmd.__doc__ and certs_cmd.__doc__.splitlines()[0]
    args = _parse(["--out", str(tmp_path), "--application-uri", "urn:acme:edge", "--hostname", "edge01"])
    assert certs_cmd.run(args) == 0
    cert = load_certificate(tmp_path / "client_cert.der")
    assert certificate_application_uris(cert) == ["urn:acme:edge"]
    assert certs_cmd.run(args) == 1  # no overwrite
    assert "already exists" in capsys.readouterr().err
    assert (
        certs_cmd.run(_parse([*["--out", str(tmp_path)], "--application-uri", "urn:acme:new", "--force"]))
        == 0
    )
    assert certificate_application_uris(load_certificate(tmp_path / "client_cert.der")) == ["urn:acme:new"]


# --- the publish callback, fed with hand-built notifications (no server) ---------------------------


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []

    def write(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)


def _publish(sub_id: int, items: list[tuple[int, ua.DataValue]]) -> ua.PublishResult:
    notif = ua.DataChangeNotification()
    notif.MonitoredItems = [ua.MonitoredItemNotification(ClientHandle=h, Value=dv) for h, dv in items]
    msg = ua.NotificationMessage(SequenceNumber=1, NotificationData=[notif])
    return ua.PublishResult(SubscriptionId=sub_id, NotificationMessage=msg)


def _dv(
    value: object, vt: ua.VariantType, status: int = 0, ts: float | None = 1_700_000_000.0
) -> ua.DataValue:
    return ua.DataValue(
        ua.Variant(value, vt),
        StatusCode=ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=None if ts is None else ua.DateTime.fromtimestamp(ts, dt.UTC),
    )


async def test_publish_callback_keeps_source_time_status_and_converts() -> None:
    tags = (
        OpcUaTag("p", "ns=2;s=P", DataType.FLOAT, scale=1e5),  # bar → Pa
        OpcUaTag("on", "ns=2;s=On", DataType.BOOLEAN, direction=Direction.MEASUREMENT),
        OpcUaTag("name", "ns=2;s=Name", DataType.DOUBLE),
    )
    sink = ListSink()
    letters: list[object] = []
    ad = OpcUaAdapter(
        OpcUaConfig("opc.tcp://127.0.0.1:1", tags, security=NONE), sink, on_dead_letter=letters.append
    )
    ad._queue = asyncio.Queue(10)
    ad._sub_id = 7
    ad._on_publish(
        _publish(
            7,
            [
                (1, _dv(2.5, ua.VariantType.Float)),
                (2, _dv(True, ua.VariantType.Boolean, status=ua.StatusCodes.UncertainLastUsableValue)),
                (3, _dv("boiler", ua.VariantType.String)),
                (
                    1,
                    ua.DataValue(
                        ua.Variant(None), StatusCode=ua.StatusCode(ua.UInt32(ua.StatusCodes.BadSensorFailure))
                    ),
                ),
            ],
        )
    )
    ad._on_publish(_publish(99, [(1, _dv(9.0, ua.VariantType.Float))]))  # a replaced subscription: ignored
    got = [ad._queue.get_nowait() for _ in range(ad._queue.qsize())]
    assert got[0] == Sample("p", 1_700_000_000.0, 2.5e5, Quality.GOOD)
    assert got[1] == Sample("on", 1_700_000_000.0, 1.0, Quality.UNCERTAIN)
    assert got[2].tag == "p" and got[2].quality is Quality.BAD and got[2].value != got[2].value  # NaN
    assert len(got) == 3
    assert ad.stats.dead_letters_by_reason == {"wrong_type": 1}
    assert len(letters) == 1 and "str" in letters[0].reason  # type: ignore[attr-defined]


async def test_publish_callback_counts_overflow_instead_of_blocking() -> None:
    tags = (OpcUaTag("a", "ns=2;s=A", DataType.DOUBLE),)
    ad = OpcUaAdapter(OpcUaConfig("opc.tcp://127.0.0.1:1", tags, security=NONE, queue_size=3), ListSink())
    ad._queue = asyncio.Queue(3)
    ad._sub_id = 1
    ad._on_publish(_publish(1, [(1, _dv(float(k), ua.VariantType.Double)) for k in range(10)]))
    assert ad._queue.qsize() == 3
    assert ad.stats.queue_overflow == 7
    assert ad.stats.notifications == 10


def test_unparseable_node_id_is_a_dead_letter_not_a_crash() -> None:
    tags = (OpcUaTag("a", "ns=x;s=A", DataType.DOUBLE), OpcUaTag("b", "ns=2;s=B", DataType.DOUBLE))
    ad = OpcUaAdapter(OpcUaConfig("opc.tcp://127.0.0.1:1", tags, security=NONE), ListSink())
    letters = list(ad.dead_letters())
    assert len(letters) == 1 and letters[0].reason.startswith("bad_node_id")
    assert ad.stats.dead_letters_by_reason == {"bad_node_id": 1}


async def test_shared_tag_binding_converts_and_refuses_out_of_range() -> None:
    # degC on the wire → K inside; a plausible range of 250..450 K.
    binding = TagBinding("t_supply", factor=1.0, offset=273.15, lower=250.0, upper=450.0)
    tags = (OpcUaTag("t_supply", "ns=2;s=T", DataType.FLOAT, binding=binding),)
    ad = OpcUaAdapter(OpcUaConfig("opc.tcp://127.0.0.1:1", tags, security=NONE), ListSink())
    ad._queue = asyncio.Queue(10)
    ad._sub_id = 1
    ad._on_publish(_publish(1, [(1, _dv(80.0, ua.VariantType.Float)), (1, _dv(900.0, ua.VariantType.Float))]))
    assert ad._queue.qsize() == 1
    assert ad._queue.get_nowait().value == pytest.approx(353.15)
    assert ad.stats.dead_letters_by_reason == {"out_of_range": 1}
    assert tags[0].from_si(353.15) == pytest.approx(80.0)
    with pytest.raises(OpcUaConfigError, match="either as binding or as scale"):
        OpcUaTag("t_supply", "ns=2;s=T", DataType.FLOAT, binding=binding, scale=2.0)
    with pytest.raises(OpcUaConfigError, match="binding is for tag"):
        OpcUaTag("other", "ns=2;s=T", DataType.FLOAT, binding=binding)


def test_policy_and_mode_names_from_the_site_config() -> None:
    assert SecurityPolicy.parse("Aes128Sha256RsaOaep") is SecurityPolicy.AES128_SHA256_RSAOAEP
    assert SecurityPolicy.parse("Aes128_Sha256_RsaOaep") is SecurityPolicy.AES128_SHA256_RSAOAEP
    assert SecurityPolicy.parse("Basic256Sha256") is SecurityPolicy.BASIC256SHA256
    assert SecurityMode.parse("SignAndEncrypt") is SecurityMode.SIGN_AND_ENCRYPT
    with pytest.raises(OpcUaConfigError, match="unknown security policy"):
        SecurityPolicy.parse("Basic128Rsa15")


def test_asyncua_transport_tracebacks_are_filtered_and_quieting_is_refcounted() -> None:
    from adapters.opcua.client import _DropTransportTracebacks, _QuietAsyncua

    flt = _DropTransportTracebacks()

    def record(exc: BaseException | None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("asyncua.client", logging.ERROR, __file__, 1, "Publish crashed", None, info)

    assert not flt.filter(record(ConnectionError("Connection is closed")))
    assert not flt.filter(record(TimeoutError()))
    assert flt.filter(record(ValueError("a real bug")))  # other errors still show
    assert flt.filter(record(None))

    logger = logging.getLogger("asyncua")
    before = logger.level
    _QuietAsyncua.enter()
    _QuietAsyncua.enter()
    assert logger.level == logging.CRITICAL
    _QuietAsyncua.leave()
    assert logger.level == logging.CRITICAL  # another adapter is still down
    _QuietAsyncua.leave()
    assert logger.level == before


def test_adapter_speaks_the_shared_protocols() -> None:
    from adapters.base import SetpointWriter, Source

    ad = OpcUaAdapter(OpcUaConfig("opc.tcp://127.0.0.1:1", (), security=NONE), ListSink())
    assert isinstance(ad, Source)
    assert isinstance(ad, SetpointWriter)
    assert list(ad.dead_letters()) == []
