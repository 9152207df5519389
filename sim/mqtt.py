"""The virtual plant on MQTT: measurement tags bound to JSON topics are published, setpoint topics applied.

Every ``step_s`` of clock time each topic that carries measurement tags gets one JSON message with every
such tag's value (engineering unit) at its JSON pointer and the clock time [s] at its timestamp pointer,
QoS 1. Messages on a setpoint tag's topic set that setpoint (value at its pointer, engineering unit).
Nothing is published while a ``comms_loss`` fault is active. Sparkplug-bound tags are not served here.

The plant itself is stepped by whoever owns it (``sim.server.PlantServer`` when both run); this publisher
only reads it, unless ``step=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Any

from paho.mqtt.client import CallbackAPIVersion, Client, MQTTMessage

from sim.plant import PlantTag, VirtualPlant
from sim.server import Clock

log = logging.getLogger(__name__)


def _set_pointer(doc: dict[str, Any], pointer: str, value: Any) -> None:
    """Set ``value`` at an RFC 6901 JSON pointer, creating objects on the way."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    node = doc
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _get_pointer(doc: Any, pointer: str) -> Any:
    for p in pointer.split("/")[1:]:
        p = p.replace("~1", "/").replace("~0", "~")
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc


class PlantMqttPublisher:
    """Publish ``plant``'s measurement tags with a JSON MQTT binding to the broker at ``host:port``."""

    def __init__(
        self,
        plant: VirtualPlant,
        *,
        clock: Clock,
        host: str = "127.0.0.1",
        port: int = 1883,
        step_s: float = 1.0,
        step: bool = False,
        client_id: str = "symtwin-virtual-plant",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.plant = plant
        self.clock = clock
        self.step_s = step_s
        self.step = step
        self.topics: dict[str, list[PlantTag]] = {}
        self.commands: dict[str, list[PlantTag]] = {}
        for t in plant.tags.values():
            if t.mqtt_topic:
                (self.topics if t.measurement else self.commands).setdefault(t.mqtt_topic, []).append(t)
        self.published = 0
        self._client = Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._host, self._port = host, port
        self._task: asyncio.Task[None] | None = None
        self._pending: list[tuple[str, float]] = []  # setpoints received on the network thread

    async def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self._task = asyncio.create_task(self._loop(), name="virtual-plant-mqtt")
        log.info(
            "virtual plant publishing %d topic(s) to mqtt://%s:%d", len(self.topics), self._host, self._port
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        # Subscribe here: subscriptions made before a reconnect are gone after it (paho).
        for topic in self.commands:
            client.subscribe(topic, qos=1)

    def _on_message(self, _client: Client, _userdata: Any, msg: MQTTMessage) -> None:
        # Network thread: parse and hand off (list append and swap are atomic), never touch the plant here.
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            log.warning("virtual plant: unreadable command on %s", msg.topic)
            return
        for tag in self.commands.get(msg.topic, []):
            try:
                value = float(_get_pointer(doc, tag.mqtt_pointer))
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            self._pending.append((tag.id, value))

    async def _loop(self) -> None:
        next_t = self.clock.now()
        while True:
            now = self.clock.now()
            pending, self._pending = self._pending, []
            if pending:
                self.plant.apply({tag: self.plant.tags[tag].to_si(v) for tag, v in pending})
            if self.step:
                self.plant.advance_to(now)
            if not self.plant.comms_down(now):
                self.publish(now)
            next_t = max(next_t + self.step_s, self.clock.now())
            await self.clock.sleep_until(next_t)

    def publish(self, now: float) -> int:
        """Publish one message per measurement topic now; return how many tag values went out."""
        values = {s.tag: s.value for s in self.plant.measurements(now)}
        n = 0
        for topic, tags in self.topics.items():
            doc: dict[str, Any] = {}
            for tag in tags:
                v = tag.to_eng(values[tag.id])
                _set_pointer(doc, tag.mqtt_pointer, v if math.isfinite(v) else None)
                if tag.mqtt_timestamp_pointer:
                    _set_pointer(doc, tag.mqtt_timestamp_pointer, now)
                n += 1
            self._client.publish(topic, json.dumps(doc), qos=1)
        self.published += n
        return n
