"""An asyncua Server with given typed variables on a free loopback port, for tests and the virtual plant.

    async with OpcUaTestServer([ServerVariable("T_supply", DataType.DOUBLE, 353.15)]) as srv:
        srv.endpoint            # opc.tcp://127.0.0.1:<port>/symtwin
        srv.node_id("T_supply") # "ns=2;s=T_supply"
        await srv.set("T_supply", 354.0)      # written with the node's exact Variant type

Security: ``secure=True`` generates a server certificate in ``pki_dir`` (its DER copy is what a client
puts in its trust list) and offers Basic256Sha256 and Aes128_Sha256_RsaOaep with SignAndEncrypt only;
``allow_none=True`` adds the unsecured endpoint. ``users`` (name → password) turns anonymous off.
``operation_limits`` writes the advertised ServerCapabilities/OperationLimits values (asyncua does not
enforce them; node-opcua does).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from adapters.opcua.certs import build_certificate, write_certificate, write_private_key
from adapters.opcua.config import DataType
from adapters.opcua.values import to_variant, variant_type

LIMIT_NODES = {
    "max_nodes_per_read": 11705,
    "max_nodes_per_write": 11707,
    "max_monitored_items_per_call": 11714,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class ServerVariable:
    """name: browse name and string node id; value: initial value in the node's own units."""

    name: str
    data_type: DataType
    value: float = 0.0
    writable: bool = True


class _Users(UserManager):
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaTestServer:
    def __init__(
        self,
        variables: Sequence[ServerVariable],
        *,
        port: int | None = None,
        namespace: str = "urn:symtwin:test",
        secure: bool = False,
        allow_none: bool = True,
        pki_dir: Path | None = None,
        application_uri: str = "urn:symtwin:test-server",
        users: Mapping[str, str] | None = None,
        operation_limits: Mapping[str, int] | None = None,
    ) -> None:
        if secure and pki_dir is None:
            raise ValueError("a secure test server needs pki_dir for its certificate")
        self.variables = list(variables)
        self.port = port or free_port()
        self.namespace = namespace
        self.secure = secure
        self.allow_none = allow_none
        self.pki_dir = pki_dir
        self.application_uri = application_uri
        self.users = dict(users) if users else None
        self.operation_limits = dict(operation_limits or {})
        self._server: Server | None = None
        self._nodes: dict[str, Any] = {}
        self._ns = 2
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        if secure and pki_dir is not None:
            self.cert_path = pki_dir / "server_cert.der"
            self.key_path = pki_dir / "server_key.pem"
            if not self.cert_path.exists():
                cert, key = build_certificate(
                    application_uri,
                    ["127.0.0.1", "localhost"],
                    server=True,
                    common_name="symtwin test server",
                )
                write_private_key(key, self.key_path)
                write_certificate(cert, self.cert_path)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/symtwin"

    def node_id(self, name: str) -> str:
        return f"ns={self._ns};s={name}"

    async def start(self) -> None:
        server = Server(user_manager=_Users(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("symtwin test server")
        await server.set_application_uri(self.application_uri)
        if self.secure:
            assert self.cert_path is not None and self.key_path is not None
            await server.load_certificate(str(self.cert_path))
            await server.load_private_key(str(self.key_path))
            policies = [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
            ]
            server.set_security_policy(
                ([ua.SecurityPolicyType.NoSecurity] if self.allow_none else []) + policies
            )
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        self._ns = await server.register_namespace(self.namespace)
        objects = server.nodes.objects
        folder = await objects.add_folder(ua.NodeId.from_string(f"ns={self._ns};s=Symtwin"), "Symtwin")
        self._nodes = {}
        for v in self.variables:
            node = await folder.add_variable(
                ua.NodeId.from_string(self.node_id(v.name)),
                ua.QualifiedName(v.name, self._ns),
                to_variant(float(v.value), v.data_type).Value,
                varianttype=variant_type(v.data_type),
            )
            if v.writable:
                await node.set_writable()
            self._nodes[v.name] = node
        for key, value in self.operation_limits.items():
            node = server.get_node(ua.NodeId.from_string(f"i={LIMIT_NODES[key]}"))
            await node.write_value(ua.Variant(value, ua.VariantType.UInt32))
        await server.start()
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def restart(self) -> None:
        """A real restart: a new Server with a new address space; every session and subscription is gone."""
        await self.stop()
        await self.start()

    async def set(
        self, name: str, value: float, source_time: dt.datetime | None = None, status: int = 0
    ) -> None:
        """Set a value as the plant would: exact type, a source timestamp (now by default), a status code."""
        var = self._nodes[name]
        data_type = next(v.data_type for v in self.variables if v.name == name)
        now = dt.datetime.now(dt.UTC)
        src = source_time or now
        dv = ua.DataValue(
            to_variant(value, data_type),
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=ua.DateTime.fromtimestamp(src.timestamp(), dt.UTC),
            ServerTimestamp=ua.DateTime.fromtimestamp(now.timestamp(), dt.UTC),
        )
        await var.write_value(dv)

    async def get(self, name: str) -> Any:
        return await self._nodes[name].read_value()

    async def __aenter__(self) -> OpcUaTestServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def quiet_server_logs() -> None:
    """asyncua's server logs every session at INFO and refused clients with tracebacks; tests want quiet."""
    logging.getLogger("asyncua.server").setLevel(logging.ERROR)


class BlackholeProxy:
    """A loopback TCP relay that can black-hole traffic, for outage tests without root or iptables.

    ``blackhole()``: from now on, bytes in either direction are held back (TCP keeps the connections
    open, so the peers see silence, not a reset: the case that makes a client hang), and new
    connections are accepted but not forwarded. ``restore()``: held connections are reset (as a
    server that gave up on them would) and new ones are forwarded again. Protocol-neutral: usable for
    OPC UA and MQTT alike.
    """

    def __init__(self, target_port: int, *, port: int | None = None, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._blackholed = False
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._held: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._reset_all()
            await self._server.wait_closed()
            self._server = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def blackhole(self) -> None:
        self._blackholed = True

    def reset(self) -> None:
        """Abort every relayed connection (a router reboot, a server-side RST); new ones still pass."""
        self._reset_all()

    def restore(self) -> None:
        self._blackholed = False
        for w in self._held:
            _abort(w)
        self._held.clear()

    def _reset_all(self) -> None:
        for down, up in list(self._conns):
            _abort(down)
            if up is not None:
                _abort(up)
        self._conns.clear()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blackholed:
            self._held.append(writer)  # accepted, never answered
            return
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _abort(writer)
            return
        pair = (writer, up_w)
        self._conns.add(pair)
        self._spawn(self._pump(reader, up_w, writer))
        self._spawn(self._pump(up_r, writer, up_w))

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, src_w: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                while self._blackholed:  # hold the bytes: the peer sees silence
                    if dst not in self._held:
                        self._held.append(dst)
                    if src_w not in self._held:
                        self._held.append(src_w)
                    await asyncio.sleep(0.05)
                if dst.is_closing():
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            _abort(dst)
            _abort(src_w)

    async def __aenter__(self) -> BlackholeProxy:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
