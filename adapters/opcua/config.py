"""Plain typed parameters of the OPC UA adapter; the application maps its site config onto these.

Validation here is local (types, ranges, combinations) and never touches the network.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path

from adapters.base import AdapterError
from adapters.tagmap import TagBinding


class OpcUaConfigError(AdapterError, ValueError):
    """The adapter parameters are inconsistent; the message names the field and what to do."""


class SecurityPolicy(enum.Enum):
    """OPC UA security policies this adapter speaks (OPC 10000-7 profiles)."""

    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"

    @classmethod
    def parse(cls, name: str) -> SecurityPolicy:
        """Accept the URI spelling ("Aes128_Sha256_RsaOaep") and the one without underscores."""
        key = name.replace("_", "").lower()
        for member in cls:
            if member.value.replace("_", "").lower() == key:
                return member
        raise OpcUaConfigError(
            f"unknown security policy {name!r}; use one of {', '.join(m.value for m in cls)}"
        )


class SecurityMode(enum.Enum):
    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"

    @classmethod
    def parse(cls, name: str) -> SecurityMode:
        for member in cls:
            if member.value.lower() == name.lower():
                return member
        raise OpcUaConfigError(
            f"unknown security mode {name!r}; use one of {', '.join(m.value for m in cls)}"
        )


class DataType(enum.Enum):
    """OPC UA built-in scalar types a tag may have; the value is the built-in type id (= ns=0;i=<id>)."""

    BOOLEAN = 1
    SBYTE = 2
    BYTE = 3
    INT16 = 4
    UINT16 = 5
    INT32 = 6
    UINT32 = 7
    INT64 = 8
    UINT64 = 9
    FLOAT = 10
    DOUBLE = 11

    @classmethod
    def parse(cls, name: str) -> DataType:
        """Accept the OPC UA spelling ("Float", "UInt16") case-insensitively."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            allowed = ", ".join(m.name.title() for m in cls)
            raise OpcUaConfigError(f"unknown OPC UA data type {name!r}; use one of {allowed}") from None


class Direction(enum.Enum):
    MEASUREMENT = "measurement"
    SETPOINT = "setpoint"


@dataclass(frozen=True, slots=True)
class OpcUaTag:
    """One tag bound to one OPC UA variable.

    tag: tag id from the site config.
    node_id: OPC UA node id string, e.g. ``ns=2;s=Boiler.Steam.Flow``.
    data_type: the node's DataType as the config expects it; a node with another type is refused.
    direction: measurements are subscribed; setpoints are written (and also subscribed, for read-back).
    sampling_interval_s: requested sampling interval [s].
    deadband: absolute deadband in the node's own units (0 = report every change).
    scale, offset: SI value = raw * scale + offset (the config edge's engineering-unit conversion).
    binding: the shared :class:`adapters.tagmap.TagBinding` (conversion plus plausible SI range);
        when given it replaces scale/offset, and values outside its range become dead letters.
    max_age_s: a tag with no notification for this long is re-read by the watchdog [s] (None = never).
    write_tolerance: read-back accepted when |read - written| <= this, in node units (None = exact for
        integers/booleans, float32 rounding for Float, 1e-9 relative for Double).
    """

    tag: str
    node_id: str
    data_type: DataType
    direction: Direction = Direction.MEASUREMENT
    sampling_interval_s: float = 1.0
    deadband: float = 0.0
    scale: float = 1.0
    offset: float = 0.0
    max_age_s: float | None = None
    write_tolerance: float | None = None
    binding: TagBinding | None = None

    def __post_init__(self) -> None:
        where = f"tag {self.tag!r}"
        if not self.tag:
            raise OpcUaConfigError("tag id is empty")
        if not self.node_id or "=" not in self.node_id:
            raise OpcUaConfigError(
                f"{where}: node_id {self.node_id!r} is not an OPC UA node id like 'ns=2;s=Name'"
            )
        if not (math.isfinite(self.sampling_interval_s) and self.sampling_interval_s >= 0):
            raise OpcUaConfigError(
                f"{where}: sampling_interval_s must be >= 0, got {self.sampling_interval_s}"
            )
        if not (math.isfinite(self.deadband) and self.deadband >= 0):
            raise OpcUaConfigError(f"{where}: deadband must be >= 0, got {self.deadband}")
        if self.deadband > 0 and self.data_type is DataType.BOOLEAN:
            raise OpcUaConfigError(f"{where}: a deadband makes no sense on a Boolean node; set it to 0")
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise OpcUaConfigError(f"{where}: scale must be finite and non-zero, offset finite")
        if self.max_age_s is not None and not self.max_age_s > 0:
            raise OpcUaConfigError(f"{where}: max_age_s must be > 0 or None")

        if self.binding is not None:
            if self.binding.tag != self.tag:
                raise OpcUaConfigError(f"{where}: its binding is for tag {self.binding.tag!r}")
            if (self.scale, self.offset) != (1.0, 0.0):
                raise OpcUaConfigError(f"{where}: give the conversion either as binding or as scale/offset")

    def to_si(self, raw: float) -> float:
        if self.binding is not None:
            return self.binding.to_si(raw)
        return raw * self.scale + self.offset

    def from_si(self, value: float) -> float:
        if self.binding is not None:
            return self.binding.from_si(value)
        return (value - self.offset) / self.scale


@dataclass(frozen=True, slots=True)
class OpcUaSecurity:
    """How to secure the connection.

    policy/mode: NONE/NONE only when the site config says so explicitly (the adapter warns).
    cert_path/key_path: client certificate (DER or PEM) and PEM key; generated when both are absent.
    trust_dir: folder of trusted server (or CA) certificates, DER or PEM; required unless policy NONE.
    application_uri: announced ApplicationUri; must be the URI in the client certificate.
    hostname: put into a generated certificate's SubjectAltName.
    username/password: user identity token; password is the resolved secret (the caller reads it).
    """

    policy: SecurityPolicy = SecurityPolicy.BASIC256SHA256
    mode: SecurityMode = SecurityMode.SIGN_AND_ENCRYPT
    cert_path: Path | None = None
    key_path: Path | None = None
    trust_dir: Path | None = None
    application_uri: str = "urn:symtwin:client"
    hostname: str = "localhost"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        none_policy = self.policy is SecurityPolicy.NONE
        none_mode = self.mode is SecurityMode.NONE
        if none_policy != none_mode:
            raise OpcUaConfigError(
                f"security policy {self.policy.value} with mode {self.mode.value}: policy None goes only with "
                "mode None (and both must be set explicitly)"
            )
        if not none_policy:
            if self.cert_path is None or self.key_path is None:
                raise OpcUaConfigError("security: cert_path and key_path are required with a security policy")
            if self.trust_dir is None:
                raise OpcUaConfigError(
                    "security: trust_dir is required; put the server's certificate there so it can be checked"
                )
        if (self.username is None) != (self.password is None):
            raise OpcUaConfigError("security: give both username and password, or neither")
        if not self.application_uri:
            raise OpcUaConfigError("security: application_uri is empty")


@dataclass(frozen=True, slots=True)
class OpcUaTimeouts:
    """Every network await is bounded by one of these [s]."""

    connect_s: float = 5.0
    request_s: float = 4.0
    probe_s: float = 2.0
    disconnect_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "request_s", "probe_s", "disconnect_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise OpcUaConfigError(f"timeouts.{name} must be > 0, got {v}")


@dataclass(frozen=True, slots=True)
class OpcUaConfig:
    """One OPC UA server connection and the tags read from / written to it.

    endpoint: ``opc.tcp://host:port/path``.
    watchdog_period_s: how often the watchdog probes server status and tag staleness [s].
    reconnect_hang_s: when asyncua's own reconnect has not recovered for this long, a fresh client is
        built [s] (opcua-asyncio#1660: reconnecting the same client can hang on a black-holed link).
    reconnect_max_delay_s: cap of asyncua's reconnect backoff [s]; small, so data flows again soon
        after a long outage ends.
    publishing_interval_s: subscription publishing interval [s].
    max_items_per_call: own cap on items per CreateMonitoredItems/Read/Write call; the server's
        advertised limits apply when smaller.
    queue_size: bound of the hand-off queue between the protocol callback and the sink [samples].
    sink_batch: most samples per ``Sink.write`` call.
    dead_letter_capacity: dead letters kept in memory (oldest dropped; each still counted).
    publish_requests: Publish requests kept in flight. Servers cap notifications per message
        (node-opcua: 1,000), so with one request in flight 10,000 changes a second queue up behind
        round trips; several in flight let the server answer back to back (OPC 10000-4 §5.13.5).
    """

    endpoint: str
    tags: tuple[OpcUaTag, ...]
    security: OpcUaSecurity = field(default_factory=OpcUaSecurity)
    timeouts: OpcUaTimeouts = field(default_factory=OpcUaTimeouts)
    name: str = "opcua"
    watchdog_period_s: float = 1.0
    reconnect_hang_s: float = 8.0
    reconnect_max_delay_s: float = 2.0
    session_timeout_s: float = 60.0
    publishing_interval_s: float = 0.5
    keepalive_s: float = 5.0
    max_items_per_call: int = 1000
    queue_size: int = 100_000
    sink_batch: int = 5000
    dead_letter_capacity: int = 1000
    publish_requests: int = 3

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("opc.tcp://"):
            raise OpcUaConfigError(f"endpoint {self.endpoint!r} must start with opc.tcp://")
        seen: set[str] = set()
        for t in self.tags:
            if t.tag in seen:
                raise OpcUaConfigError(f"tag {t.tag!r} is bound twice in OPC UA connection {self.name!r}")
            seen.add(t.tag)
        for name in (
            "watchdog_period_s",
            "reconnect_hang_s",
            "reconnect_max_delay_s",
            "session_timeout_s",
            "publishing_interval_s",
            "keepalive_s",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise OpcUaConfigError(f"{name} must be > 0, got {v}")
        for name in (
            "max_items_per_call",
            "queue_size",
            "sink_batch",
            "dead_letter_capacity",
            "publish_requests",
        ):
            if getattr(self, name) < 1:
                raise OpcUaConfigError(f"{name} must be >= 1")
