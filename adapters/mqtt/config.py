"""Plain typed parameters of the MQTT adapter (the lead maps the site config onto these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adapters.tagmap import TagBinding


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Connection parameters.

    client_id: fixed, so the broker keeps this client's persistent session across reconnects and restarts.
    password: pass it in from the environment or a secret file, never from the YAML itself.
    tls_ca: CA bundle that signed the broker certificate; setting it turns TLS on.
    tls_cert, tls_key: client certificate and key, for brokers that require one.
    clean_start, session_expiry_s: MQTT v5 persistent session (clean_start False + expiry > 0) so QoS 1
        messages published while this client is away are kept by the broker and delivered on reconnect.
    keepalive_s: MQTT keep-alive [s].
    reconnect_min_s, reconnect_max_s: paho's reconnect back-off bounds [s]; the max bounds how long after
        the broker returns the client is back.
    connect_timeout_s: how long ``start()`` waits for CONNACK and SUBACK [s].
    command_timeout_s: how long a setpoint waits for its PUBACK [s]; also the command's message expiry.
    max_payload_bytes: larger inbound payloads are dead-lettered without decoding.
    max_queued_commands: outgoing QoS 1 messages paho may hold (commands and rebirth requests).
    dedupe_window: most timestamps remembered per tag to drop QoS 1 redeliveries (0 disables); the
        router keeps the last 300 s of source time per tag within that cap.
    dead_letters_kept: how many recent dead letters ``dead_letters()`` returns (the store keeps them all).
    """

    host: str
    port: int = 1883
    client_id: str = "symtwin"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    clean_start: bool = False
    session_expiry_s: int = 3600
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 2
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 5.0
    max_payload_bytes: int = 262_144
    max_queued_commands: int = 1000
    dedupe_window: int = 65536
    dead_letters_kept: int = 1000

    def __post_init__(self) -> None:
        if not self.client_id:
            raise ValueError("MqttConfig.client_id must be set (a persistent session needs a fixed id)")
        if not 0 < self.port < 65536:
            raise ValueError(f"MqttConfig.port {self.port} is not a TCP port")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("MqttConfig.tls_cert and tls_key go together")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError("a client certificate needs tls_ca (TLS is enabled by tls_ca)")
        if self.password is not None and self.username is None:
            raise ValueError("MqttConfig.password given without username")
        if self.reconnect_min_s < 0 or self.reconnect_max_s < max(self.reconnect_min_s, 1):
            raise ValueError("reconnect back-off must satisfy 0 <= min <= max and max >= 1 s")


@dataclass(frozen=True, slots=True)
class SetpointBinding:
    """Where a setpoint tag is written: a QoS 1 JSON command on ``topic``, value in the binding's raw unit.

    The binding's bounds (SI) are checked before sending; its factor/offset convert SI → engineering unit.
    """

    topic: str
    binding: TagBinding

    def __post_init__(self) -> None:
        if not self.topic or "+" in self.topic or "#" in self.topic:
            raise ValueError(f"setpoint topic {self.topic!r} for {self.binding.tag} must be an exact topic")
