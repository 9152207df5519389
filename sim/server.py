"""The virtual plant behind a real OPC UA server: every tag at its configured node id and data type.

    server = PlantServer(plant, host="127.0.0.1", port=4840, clock=ScaledClock(t0, 60))
    await server.start()        # serves opc.tcp://127.0.0.1:4840/symtwin/ and runs the plant loop
    ...
    await server.close()

A loop on the injected clock advances the plant every ``step_s`` and writes each measurement node in the
tag's ENGINEERING unit (``PlantTag.to_eng``) with the clock's time as source timestamp. Values clients
write to setpoint nodes are converted to SI (``PlantTag.to_si``) for the plant.
Client writes to setpoint nodes are applied to the plant as they arrive (asyncua's PostWrite callback);
setpoint nodes hold what was last written (the read-back). Extra writable nodes (the service heartbeat)
can be added with ``extra_nodes``.

While a ``comms_loss`` fault is active the server's network side is stopped (every connection drops, the
port refuses) and started again on the same port afterwards; sessions and subscriptions are gone, the
address space stays and keeps being updated; the plant keeps running meanwhile.

Security: None. This server is for simulation on loopback only; it says so in a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol

from asyncua import Server, ua
from asyncua.common.callback import CallbackType

from adapters.opcua.config import DataType
from adapters.opcua.values import to_variant, variant_type
from sim.plant import PlantTag, VirtualPlant

log = logging.getLogger(__name__)

NAMESPACE = "urn:symtwin:virtual-plant"


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


def _variant(value: float, data_type: DataType) -> ua.Variant:
    # A sensor_nan fault must reach the wire as NaN; to_variant refuses non-finite values on purpose.
    if not math.isfinite(value) and data_type in (DataType.FLOAT, DataType.DOUBLE):
        return ua.Variant(value, variant_type(data_type))
    return to_variant(value, data_type)


def _stamp(t: float) -> ua.DateTime:
    return ua.DateTime.fromtimestamp(t, dt.UTC)


class PlantServer:
    """An asyncua server exposing ``plant`` and stepping it on ``clock``.

    step_s: plant step and publishing period [s of clock time].
    extra_nodes: (node id, data type name) of further writable nodes, e.g. the service heartbeat.
    """

    def __init__(
        self,
        plant: VirtualPlant,
        *,
        clock: Clock,
        host: str = "127.0.0.1",
        port: int = 4840,
        path: str = "/symtwin/",
        step_s: float = 1.0,
        extra_nodes: Sequence[tuple[str, str]] = (),
    ) -> None:
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self.plant = plant
        self.clock = clock
        self.host = host
        self.port = port
        self.path = path
        self.step_s = step_s
        self.extra_nodes = list(extra_nodes)
        self.tags: list[PlantTag] = [t for t in plant.tags.values() if t.node_id]
        missing = [t.id for t in plant.tags.values() if not t.node_id]
        if missing:
            log.info("virtual plant: tags without an OPC UA binding are not served: %s", ", ".join(missing))
        self._types = {t.id: DataType.parse(t.data_type) for t in self.tags}
        self._server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._extra: dict[str, tuple[ua.NodeId, DataType]] = {}
        self._setpoint_nodes: dict[ua.NodeId, PlantTag] = {}
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self.restarts = 0
        self.published = 0  # measurement values written to nodes

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{self.path}"

    @property
    def serving(self) -> bool:
        """True while clients can connect (started and not in a comms_loss outage)."""
        return self._server is not None and not self._down

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve, and start the plant loop unless it is already running (after ``stop()`` the plant has gone
        on; a restart brings back only the network side, never a second plant loop)."""
        if self._server is None:
            await self._serve()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="virtual-plant")

    async def close(self) -> None:
        """Stop the loop and the server."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.stop()

    async def stop(self) -> None:
        """Stop serving (connections drop); the plant loop, if running, goes on."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def _serve(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("symtwin virtual plant")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        node_ids = [ua.NodeId.from_string(t.node_id) for t in self.tags if t.node_id]
        node_ids += [ua.NodeId.from_string(n) for n, _ in self.extra_nodes]
        # Register namespaces until every configured index exists (configs use ns=2: the first free one).
        top = max((n.NamespaceIndex for n in node_ids), default=2)
        idx = await server.register_namespace(NAMESPACE)
        while idx < top:
            idx = await server.register_namespace(f"{NAMESPACE}:{idx + 1}")
        folder = await server.nodes.objects.add_folder(
            ua.NodeId.from_string("ns=2;s=VirtualPlant"), "VirtualPlant"
        )
        now = self.clock.now()
        for tag in self.tags:
            assert tag.node_id is not None
            nid = ua.NodeId.from_string(tag.node_id)
            dtype = self._types[tag.id]
            value = self._value_eng(tag)
            node = await folder.add_variable(
                nid,
                ua.QualifiedName(tag.id, nid.NamespaceIndex),
                _variant(value, dtype).Value,
                varianttype=variant_type(dtype),
            )
            if not tag.measurement:
                await node.set_writable()
                self._setpoint_nodes[nid] = tag
            self._nodes[tag.id] = nid
        for node_id, type_name in self.extra_nodes:
            nid = ua.NodeId.from_string(node_id)
            dtype = DataType.parse(type_name)
            node = await folder.add_variable(
                nid,
                ua.QualifiedName(node_id, nid.NamespaceIndex),
                to_variant(0.0, dtype).Value,
                varianttype=variant_type(dtype),
            )
            await node.set_writable()
            self._extra[node_id] = (nid, dtype)
        server.subscribe_server_callback(CallbackType.PostWrite, self._on_write)
        await server.start()
        self._server = server
        await self._publish(server, now)
        log.warning(
            "virtual plant OPC UA server at %s with security None (simulation on loopback only; never expose it)",
            self.endpoint,
        )

    def _value_eng(self, tag: PlantTag) -> float:
        if tag.measurement:
            return tag.to_eng(self.plant.true_value(tag.key))
        return tag.to_eng(self.plant.commanded[tag.id])

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        next_t = self.clock.now()
        while True:
            now = self.clock.now()
            try:
                await self._tick(now)
            except Exception:  # the plant must keep running for the tests and commissioning that watch it
                log.exception("virtual plant step failed at %.0f", now)
            next_t += self.step_s
            if next_t < self.clock.now():
                next_t = self.clock.now()
            await self.clock.sleep_until(next_t)

    async def _tick(self, now: float) -> None:
        down = self.plant.comms_down(now)
        server = self._server
        if down and self.serving and server is not None and server.bserver is not None:
            # Drop every connection and close the port; the address space stays (a fresh asyncua Server
            # takes seconds to build its standard nodes, longer than a short outage at high speed-up).
            await server.bserver.stop()
            self._down = True
            log.warning("comms_loss: virtual plant server down (connections dropped, port closed)")
        elif not down and self._down and server is not None and server.bserver is not None:
            await server.bserver.start()
            self._down = False
            self.restarts += 1
            log.warning("comms restored: virtual plant server serving again at %s", self.endpoint)
        self.plant.advance_to(now)
        if server is not None:
            await self._publish(server, now)

    def _on_write(self, event: Any, _dispatcher: Any) -> None:
        """Apply each successful client write to a setpoint node at once (asyncua's PostWrite callback)."""
        changed: dict[str, float] = {}
        restamp: list[tuple[ua.NodeId, ua.Variant]] = []
        extra = {nid for nid, _ in self._extra.values()}
        for wv, status in zip(event.request_params.NodesToWrite, event.response_params, strict=False):
            if wv.AttributeId != ua.AttributeIds.Value or not status.is_good() or wv.Value.Value is None:
                continue
            tag = self._setpoint_nodes.get(wv.NodeId)
            if tag is not None or wv.NodeId in extra:
                restamp.append((wv.NodeId, wv.Value.Value))
            value = wv.Value.Value.Value
            if tag is not None and isinstance(value, int | float):
                changed[tag.id] = tag.to_si(float(value))
        if changed:
            self.plant.apply(changed)
        if restamp and self._server is not None:
            # Clients write values without timestamps and the server stamps them with the wall clock; the
            # read-back (and the heartbeat) must carry plant time like every measurement does.
            asyncio.get_running_loop().create_task(self._restamp(self._server, restamp, self.clock.now()))

    @staticmethod
    async def _restamp(server: Server, values: list[tuple[ua.NodeId, ua.Variant]], now: float) -> None:
        stamp = _stamp(now)
        for nid, variant in values:
            await server.write_attribute_value(
                nid, ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
            )

    async def _publish(self, server: Server, now: float) -> None:
        stamp = _stamp(now)
        for sample in self.plant.measurements(now):
            tag = self.plant.tags[sample.tag]
            nid = self._nodes.get(sample.tag)
            if nid is None:
                continue
            dv = ua.DataValue(
                _variant(tag.to_eng(sample.value), self._types[sample.tag]),
                SourceTimestamp=stamp,
                ServerTimestamp=stamp,
            )
            await server.write_attribute_value(nid, dv)
            self.published += 1

    async def read(self, tag: str) -> Any:
        """The value a node holds now (its native type), or None while the server is down."""
        if self._server is None:
            return None
        dv = self._server.iserver.aspace.read_attribute_value(self._nodes[tag], ua.AttributeIds.Value)
        return dv.Value.Value if dv.Value is not None else None

    async def read_variant_type(self, node_id: str) -> ua.VariantType | None:
        if self._server is None:
            return None
        dv = self._server.iserver.aspace.read_attribute_value(
            ua.NodeId.from_string(node_id), ua.AttributeIds.Value
        )
        return dv.Value.VariantType if dv.Value is not None else None


def plant_server_for(
    site: Any, plant: VirtualPlant, *, clock: Clock, port: int, host: str = "127.0.0.1", step_s: float = 1.0
) -> PlantServer:
    """A server for a loaded site: the endpoint path of ``adapters.opcua.endpoint`` (default /symtwin/) and the
    service heartbeat node (``controller.heartbeat``) as an extra writable node."""
    from urllib.parse import urlparse

    path = "/symtwin/"
    opc = getattr(site.config.adapters, "opcua", None)
    if opc is not None and opc.endpoint:
        path = urlparse(opc.endpoint).path or "/"
    extra = []
    hb = site.config.controller.heartbeat
    if hb is not None:
        extra.append((hb.node_id, hb.data_type))
    return PlantServer(plant, clock=clock, host=host, port=port, path=path, step_s=step_s, extra_nodes=extra)
