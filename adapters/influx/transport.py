"""The one HTTP call the historian makes: POST a gzipped line-protocol body to ``/api/v2/write``.

:class:`InfluxClientTransport` uses influxdb-client's generated ``WriteService`` (its urllib3 pool,
auth header, TLS options) but none of its batching or retries: the client's batching mode loses data
on close and after its retries (influxdb-client-python#504, #165, #198), so the outbox owns both. We
gzip ourselves (level 1) because the client's ``enable_gzip`` compresses at level 9, several times the
CPU for ~10 % smaller bodies. Any other transport (tests) implements :class:`WriteTransport`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

NO_RESPONSE = 0  # status used when the request got no HTTP answer (refused, reset, timeout)


@dataclass(frozen=True, slots=True)
class WriteResponse:
    """What the store said: HTTP status (0 = no answer), its message, and Retry-After if any [s]."""

    status: int
    message: str = ""
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class WriteTransport(Protocol):
    def post(self, gzipped_body: bytes) -> WriteResponse: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class InfluxParams:
    """Where the InfluxDB v2 write API is.

    url: e.g. ``http://influxdb:8086`` (victoria-metrics: its HTTP address; org/bucket/token ignored).
    timeout_s: per request [s].
    """

    url: str
    org: str
    bucket: str
    token: str = ""
    timeout_s: float = 10.0
    verify_ssl: bool = True
    ssl_ca_cert: str | None = None


class InfluxClientTransport:
    """POST through influxdb-client's WriteService; never retries by itself."""

    def __init__(self, params: InfluxParams) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        self._p = params
        self._client = InfluxDBClient(
            url=params.url,
            token=params.token or "unused",
            org=params.org,
            timeout=int(params.timeout_s * 1000),
            verify_ssl=params.verify_ssl,
            ssl_ca_cert=params.ssl_ca_cert,
            retries=False,
        )
        self._service = WriteService(self._client.api_client)

    def post(self, gzipped_body: bytes) -> WriteResponse:
        from influxdb_client.rest import ApiException

        try:
            self._service.post_write(
                org=self._p.org,
                bucket=self._p.bucket,
                body=gzipped_body,
                content_encoding="gzip",
                precision="ns",
            )
        except ApiException as e:
            headers: Mapping[str, str] = e.headers or {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            body = e.body.decode(errors="replace") if isinstance(e.body, bytes) else str(e.body or "")
            return WriteResponse(
                int(e.status or NO_RESPONSE), (body or str(e.reason or ""))[:500], retry_after
            )
        except Exception as e:  # urllib3/socket errors: no answer from the store
            return WriteResponse(NO_RESPONSE, f"{type(e).__name__}: {e}"[:500])
        return WriteResponse(204)

    def close(self) -> None:
        self._client.close()
