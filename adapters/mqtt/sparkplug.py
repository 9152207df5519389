"""Sparkplug B: a small protobuf wire-format codec for ``Payload`` and the host-application state.

Field numbers are those of ``sparkplug_b.proto`` (Eclipse Tahu / Sparkplug 3.0):
Payload{timestamp=1 uint64, metrics=2 Metric, seq=3 uint64}; Metric{name=1 string, alias=2 uint64,
timestamp=3 uint64, datatype=4 uint32, is_null=7 bool, int_value=10 uint32, long_value=11 uint64,
float_value=12 float, double_value=13 double, boolean_value=14 bool, string_value=15 string}.
Other fields (metadata, properties, datasets, templates, uuid, body) are skipped on decode.

Host state (:class:`SparkplugHost`), per edge node: the alias table from NBIRTH/DBIRTH, bdSeq and the
0–255 message sequence. A sequence gap, data before a birth, an unknown alias and an NDEATH each ask the
node for a rebirth (NCMD ``Node Control/Rebirth`` = true), at most once per ``rebirth_retry_s``.
Everything here is pure (no I/O): the caller publishes the returned commands.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.base import Sample
from adapters.tagmap import Refusal, TagBinding, plausible_timestamp

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"


class DataType(enum.IntEnum):
    """Sparkplug B metric data types (the ones with scalar values)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


class SparkplugRefusal(enum.StrEnum):
    UNDECODABLE = "sparkplug_undecodable"
    BAD_TOPIC = "sparkplug_bad_topic"
    NO_BIRTH = "sparkplug_no_birth"
    UNKNOWN_ALIAS = "sparkplug_unknown_alias"
    NULL_VALUE = "sparkplug_null_value"


class SparkplugDecodeError(ValueError):
    """The bytes are not a Sparkplug B payload this decoder understands."""


# Field numbers of Payload and Payload.Metric.
_P_TIMESTAMP, _P_METRICS, _P_SEQ = 1, 2, 3
_M_NAME, _M_ALIAS, _M_TIMESTAMP, _M_DATATYPE, _M_IS_NULL = 1, 2, 3, 4, 7
_M_INT, _M_LONG, _M_FLOAT, _M_DOUBLE, _M_BOOL, _M_STRING = 10, 11, 12, 13, 14, 15
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

MetricValue = int | float | bool | str | None


@dataclass(slots=True)
class Metric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None  # [ms since the epoch]
    datatype: int = DataType.UNKNOWN
    is_null: bool = False
    value: MetricValue = None


@dataclass(slots=True)
class Payload:
    timestamp: int | None = None  # [ms since the epoch]
    metrics: list[Metric] = field(default_factory=list)
    seq: int | None = None


# ---------------------------------------------------------------- wire format


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise SparkplugDecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise SparkplugDecodeError("varint longer than 10 bytes")


def _skip_or_read(buf: bytes, pos: int, end: int, wt: int) -> tuple[int, int]:
    """Read one field value after its key: (varint value or LEN start, new position).

    Fixed-width values are not decoded here (the caller unpacks the ones it wants at the old position).
    """
    if wt == _VARINT:
        if pos < end and buf[pos] < 0x80:  # fast path: one-byte varint
            return buf[pos], pos + 1
        return _read_varint(buf, pos, end)
    if wt == _LEN:
        if pos < end and buf[pos] < 0x80:
            n, pos = buf[pos], pos + 1
        else:
            n, pos = _read_varint(buf, pos, end)
        if n > end - pos:
            raise SparkplugDecodeError("length-delimited field runs past the end")
        return pos, pos + n
    if wt == _I64:
        if pos + 8 > end:
            raise SparkplugDecodeError("truncated fixed64")
        return pos, pos + 8
    if wt == _I32:
        if pos + 4 > end:
            raise SparkplugDecodeError("truncated fixed32")
        return pos, pos + 4
    # groups (3, 4) are deprecated and never used by Sparkplug; 6 and 7 are not wire types
    raise SparkplugDecodeError(f"unsupported wire type {wt}")


def _key_at(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    if buf[pos] < 0x80:
        key, pos = buf[pos], pos + 1
    else:
        key, pos = _read_varint(buf, pos, end)
    num = key >> 3
    if num == 0:
        raise SparkplugDecodeError("field number 0")
    return num, key & 7, pos


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


_INT64 = int(DataType.INT64)
_SIGNED_BITS = {int(DataType.INT8): 8, int(DataType.INT16): 16, int(DataType.INT32): 32}


def _int_value(raw: int, datatype: int) -> int:
    # Signed types travel as two's complement in the unsigned protobuf field.
    bits = _SIGNED_BITS.get(datatype)
    return _signed(raw, bits) if bits is not None else raw & 0xFFFFFFFF


# Wire type each known Metric field must have.
_METRIC_WT = {
    _M_NAME: _LEN,
    _M_ALIAS: _VARINT,
    _M_TIMESTAMP: _VARINT,
    _M_DATATYPE: _VARINT,
    _M_IS_NULL: _VARINT,
    _M_INT: _VARINT,
    _M_LONG: _VARINT,
    _M_FLOAT: _I32,
    _M_DOUBLE: _I64,
    _M_BOOL: _VARINT,
    _M_STRING: _LEN,
}


def _utf8(buf: bytes, a: int, b: int, what: str) -> str:
    try:
        return buf[a:b].decode("utf-8")
    except UnicodeDecodeError:
        raise SparkplugDecodeError(f"{what} is not UTF-8") from None


def _decode_metric(buf: bytes, pos: int, end: int) -> Metric:
    m = Metric()
    value_field = 0
    v_a = v_b = 0
    while pos < end:
        # Inlined fast paths (one-byte key, one-byte varint): this loop runs once per field per metric.
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise SparkplugDecodeError("field number 0")
        if wt == _VARINT and pos < end and buf[pos] < 0x80:
            a = buf[pos]
            pos += 1
        else:
            a, pos = _skip_or_read(buf, pos, end, wt)
        want = _METRIC_WT.get(num)
        if want is None:
            continue  # metadata, properties, bytes, dataset, template, extensions
        if wt != want:
            raise SparkplugDecodeError(f"Metric field {num} has wire type {wt}, expected {want}")
        if num == _M_NAME:
            m.name = _utf8(buf, a, pos, "metric name")
        elif num == _M_ALIAS:
            m.alias = a
        elif num == _M_TIMESTAMP:
            m.timestamp = a
        elif num == _M_DATATYPE:
            m.datatype = a & 0xFFFFFFFF
        elif num == _M_IS_NULL:
            m.is_null = bool(a)
        else:  # one of the value fields; the last one wins, as in protobuf
            value_field, v_a, v_b = num, a, pos
    if value_field == _M_INT:
        m.value = _int_value(v_a, m.datatype)
    elif value_field == _M_LONG:
        m.value = _signed(v_a, 64) if m.datatype == _INT64 else v_a
    elif value_field == _M_FLOAT:
        m.value = _F32.unpack_from(buf, v_a)[0]
    elif value_field == _M_DOUBLE:
        m.value = _F64.unpack_from(buf, v_a)[0]
    elif value_field == _M_BOOL:
        m.value = bool(v_a)
    elif value_field == _M_STRING:
        m.value = _utf8(buf, v_a, v_b, "string value")
    return m


def decode_payload(buf: bytes) -> Payload:
    """Protobuf bytes → :class:`Payload`; raises :class:`SparkplugDecodeError` on anything malformed."""
    p = Payload()
    pos, end = 0, len(buf)
    while pos < end:
        num, wt, pos = _key_at(buf, pos, end)
        a, pos = _skip_or_read(buf, pos, end, wt)
        if num == _P_METRICS:
            if wt != _LEN:
                raise SparkplugDecodeError(f"Payload.metrics has wire type {wt}")
            p.metrics.append(_decode_metric(buf, a, pos))
        elif num in (_P_TIMESTAMP, _P_SEQ):
            if wt != _VARINT:
                raise SparkplugDecodeError(f"Payload field {num} has wire type {wt}")
            if num == _P_TIMESTAMP:
                p.timestamp = a
            else:
                p.seq = a
    return p


def _varint(v: int) -> bytes:
    v &= _U64
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _key(num: int, wt: int) -> bytes:
    return _varint((num << 3) | wt)


def _len_field(num: int, data: bytes) -> bytes:
    return _key(num, _LEN) + _varint(len(data)) + data


def _default_datatype(value: MetricValue) -> DataType:
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.INT64
    if isinstance(value, float):
        return DataType.DOUBLE
    if isinstance(value, str):
        return DataType.STRING
    return DataType.UNKNOWN


def encode_metric(m: Metric) -> bytes:
    out = bytearray()
    if m.name is not None:
        out += _len_field(_M_NAME, m.name.encode())
    if m.alias is not None:
        out += _key(_M_ALIAS, _VARINT) + _varint(m.alias)
    if m.timestamp is not None:
        out += _key(_M_TIMESTAMP, _VARINT) + _varint(m.timestamp)
    dt = DataType(m.datatype) if m.datatype else _default_datatype(m.value)
    out += _key(_M_DATATYPE, _VARINT) + _varint(int(dt))
    if m.is_null or m.value is None:
        out += _key(_M_IS_NULL, _VARINT) + b"\x01"
        return bytes(out)
    v = m.value
    if dt == DataType.BOOLEAN:
        out += _key(_M_BOOL, _VARINT) + _varint(int(bool(v)))
    elif dt in (DataType.FLOAT,):
        out += _key(_M_FLOAT, _I32) + struct.pack("<f", float(v))  # type: ignore[arg-type]
    elif dt == DataType.DOUBLE:
        out += _key(_M_DOUBLE, _I64) + struct.pack("<d", float(v))  # type: ignore[arg-type]
    elif dt in (DataType.STRING, DataType.TEXT):
        out += _len_field(_M_STRING, str(v).encode())
    elif dt in (DataType.INT64, DataType.UINT64, DataType.DATETIME):
        out += _key(_M_LONG, _VARINT) + _varint(int(v))  # type: ignore[arg-type]
    else:  # 8/16/32-bit ints, two's complement in 32 bits
        out += _key(_M_INT, _VARINT) + _varint(int(v) & 0xFFFFFFFF)  # type: ignore[arg-type]
    return bytes(out)


def encode_payload(p: Payload) -> bytes:
    """:class:`Payload` → protobuf bytes (for publishers, tests and the rebirth command)."""
    out = bytearray()
    if p.timestamp is not None:
        out += _key(_P_TIMESTAMP, _VARINT) + _varint(p.timestamp)
    for m in p.metrics:
        out += _len_field(_P_METRICS, encode_metric(m))
    if p.seq is not None:
        out += _key(_P_SEQ, _VARINT) + _varint(p.seq)
    return bytes(out)


# ---------------------------------------------------------------- host application state


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    message_type: str
    edge: str
    device: str | None


def parse_topic(topic: str) -> Topic | None:
    """``spBv1.0/<group>/<type>/<edge>[/<device>]`` → :class:`Topic`, or None if it is not one."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or not all(parts):
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


@dataclass(frozen=True, slots=True)
class MetricKey:
    """Identifies one Sparkplug metric: group, edge node, device (None for node metrics) and name."""

    group: str
    edge: str
    device: str | None
    name: str


def metric_key(topic: str, metric: str) -> MetricKey:
    """The :class:`MetricKey` for a config binding: ``topic`` is ``spBv1.0/<group>/<type>/<edge>[/<device>]``
    (the message type is ignored, ``+`` is fine there) and ``metric`` the metric name (one leading ``/``,
    as a JSON-pointer-minded config may write it, is dropped)."""
    parts = topic.split("/")
    if (
        len(parts) not in (4, 5)
        or parts[0] != NAMESPACE
        or not all(parts)
        or "+" in (parts[1], parts[3], *parts[4:])
    ):
        raise ValueError(f"Sparkplug binding topic {topic!r} is not spBv1.0/<group>/<type>/<edge>[/<device>]")
    name = metric[1:] if metric.startswith("/") else metric
    if not name:
        raise ValueError(f"Sparkplug binding on {topic!r} needs a metric name")
    return MetricKey(parts[1], parts[3], parts[4] if len(parts) == 5 else None, name)


@dataclass(slots=True)
class _Node:
    online: bool = False
    bd_seq: int | None = None
    last_seq: int | None = None
    aliases: dict[int, str] = field(default_factory=dict)
    rebirth_requested_at: float | None = None


@dataclass(slots=True)
class SparkplugResult:
    samples: list[Sample] = field(default_factory=list)
    refusals: list[tuple[str, str]] = field(default_factory=list)
    commands: list[tuple[str, bytes]] = field(default_factory=list)  # (topic, payload) to publish, QoS 1
    seq_gap: bool = False


def rebirth_command(group: str, edge: str, now_s: float) -> tuple[str, bytes]:
    """The NCMD asking an edge node to publish its births again."""
    payload = Payload(
        timestamp=int(now_s * 1000),
        metrics=[Metric(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, value=True)],
    )
    return f"{NAMESPACE}/{group}/NCMD/{edge}", encode_payload(payload)


class SparkplugHost:
    """Sparkplug B host-application state for the bound metrics; one instance per MQTT client thread.

    bindings: MetricKey → TagBinding for every metric the site uses; others are tracked (aliases) but
    yield no samples. Not thread-safe: call :meth:`handle` from one thread.
    """

    def __init__(self, bindings: Mapping[MetricKey, TagBinding], rebirth_retry_s: float = 5.0) -> None:
        self._bindings = dict(bindings)
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._rebirth_retry_s = rebirth_retry_s

    @property
    def groups(self) -> set[str]:
        return {k.group for k in self._bindings}

    def node_online(self, group: str, edge: str) -> bool:
        node = self._nodes.get((group, edge))
        return node is not None and node.online

    def _request_rebirth(self, node: _Node, t: Topic, now: float, out: SparkplugResult) -> None:
        if node.rebirth_requested_at is not None and now - node.rebirth_requested_at < self._rebirth_retry_s:
            return
        node.rebirth_requested_at = now
        out.commands.append(rebirth_command(t.group, t.edge, now))

    def _check_seq(self, node: _Node, seq: int | None, t: Topic, now: float, out: SparkplugResult) -> None:
        expected = None if node.last_seq is None else (node.last_seq + 1) % 256
        if seq is None or expected is None or seq != expected:
            out.seq_gap = True
            self._request_rebirth(node, t, now, out)
        if seq is not None:
            node.last_seq = seq % 256

    def handle(self, topic: str, payload: bytes, received_at: float) -> SparkplugResult:
        """One Sparkplug message → samples, refusals and commands to publish. Never raises on bad input."""
        out = SparkplugResult()
        t = parse_topic(topic)
        if t is None:
            out.refusals.append((SparkplugRefusal.BAD_TOPIC.value, topic[:200]))
            return out
        if t.message_type in ("NCMD", "DCMD"):  # commands (ours included) carry no measurements
            return out
        try:
            p = decode_payload(payload)
        except SparkplugDecodeError as exc:
            out.refusals.append((SparkplugRefusal.UNDECODABLE.value, str(exc)))
            return out
        node = self._nodes.setdefault((t.group, t.edge), _Node())
        mt = t.message_type
        if mt == "NBIRTH":
            node.online = True
            node.aliases.clear()
            node.last_seq = None if p.seq is None else p.seq % 256
            node.rebirth_requested_at = None
            for m in p.metrics:
                if m.name == BDSEQ_METRIC and isinstance(m.value, int):
                    node.bd_seq = m.value
            self._learn_aliases(node, p, out)
        elif mt == "NDEATH":
            bd = next((m.value for m in p.metrics if m.name == BDSEQ_METRIC), None)
            # A death whose bdSeq does not match the current birth is a stale will from an older session.
            if node.online and (bd is None or node.bd_seq is None or bd == node.bd_seq):
                node.online = False
                node.aliases.clear()
                node.last_seq = None
                self._request_rebirth(node, t, received_at, out)
            return out
        elif mt in ("DBIRTH", "NDATA", "DDATA", "DDEATH"):
            if not node.online:
                out.refusals.append(
                    (SparkplugRefusal.NO_BIRTH.value, f"{mt} from {t.group}/{t.edge} before NBIRTH")
                )
                self._request_rebirth(node, t, received_at, out)
                return out
            self._check_seq(node, p.seq, t, received_at, out)
            if mt == "DBIRTH":
                self._learn_aliases(node, p, out)
            elif mt == "DDEATH":
                return out
        else:  # STATE and unknown message types carry nothing we use
            return out
        self._samples(node, t, p, received_at, out)
        return out

    def _learn_aliases(self, node: _Node, p: Payload, out: SparkplugResult) -> None:
        for m in p.metrics:
            if m.name is not None and m.alias is not None:
                node.aliases[m.alias] = m.name

    def _samples(self, node: _Node, t: Topic, p: Payload, received_at: float, out: SparkplugResult) -> None:
        for m in p.metrics:
            name = m.name
            if name is None:
                if m.alias is None or m.alias not in node.aliases:
                    out.refusals.append(
                        (SparkplugRefusal.UNKNOWN_ALIAS.value, f"alias {m.alias} on {t.edge}")
                    )
                    self._request_rebirth(node, t, received_at, out)
                    continue
                name = node.aliases[m.alias]
            binding = self._bindings.get(MetricKey(t.group, t.edge, t.device, name))
            if binding is None:
                continue
            ts_ms = m.timestamp if m.timestamp is not None else p.timestamp
            ts = ts_ms / 1000.0 if ts_ms is not None else received_at
            if not plausible_timestamp(ts):
                out.refusals.append((Refusal.BAD_TIMESTAMP.value, f"{binding.tag}: {ts_ms} ms"))
                continue
            if m.is_null or m.value is None:
                out.refusals.append((SparkplugRefusal.NULL_VALUE.value, binding.tag))
                continue
            result = binding.sample(m.value, ts)
            if isinstance(result, Sample):
                out.samples.append(result)
            else:
                out.refusals.append((result.value, f"{binding.tag}: {str(m.value)[:40]}"))
