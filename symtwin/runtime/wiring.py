"""Site config → the plain parameters of each component (adapters, service, forecasts). One place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from adapters.opcua.config import (
    DataType,
    OpcUaConfig,
    OpcUaSecurity,
    OpcUaTag,
    OpcUaTimeouts,
    SecurityMode,
    SecurityPolicy,
)
from adapters.opcua.config import Direction as UaDirection
from symtwin.config import LoadedSite
from symtwin.config.schema import Direction
from symtwin.runtime.service import ServiceParams
from symtwin.secrets import resolve
from symtwin.units import UNITS, parse_duration, parse_quantity

HEARTBEAT_TAG = "symtwin.heartbeat"


def service_params(site: LoadedSite) -> ServiceParams:
    c = site.config.controller
    step = parse_duration(c.step)
    return ServiceParams(
        cycle_s=parse_duration(c.cycle),
        control_period_s=parse_duration(c.period),
        deadline_fraction=c.deadline_fraction,
        horizon_steps=max(1, round(parse_duration(c.horizon) / step)),
        step_s=step,
        heartbeat_tag=HEARTBEAT_TAG if c.heartbeat is not None else None,
    )


def opcua_config(
    site: LoadedSite,
    *,
    endpoint: str | None = None,
    insecure: bool = False,
    credentials_dir: str | Path | None = None,
    time_scale: float = 1.0,
) -> OpcUaConfig:
    """The OPC UA adapter's parameters for every OPC UA-bound tag (and the heartbeat node).

    endpoint/insecure override the config for the simulation-only mode (virtual plant on loopback).
    time_scale: clock seconds per wall second (simulation faster than real time): the adapter's own
    periods run on the wall clock, so sampling, publishing and re-read ages shrink by this factor.
    """
    k = float(time_scale)
    tags = []
    for t in site.tags.values():
        b = t.binding.opcua
        if b is None:
            continue
        d = UNITS[t.eng_unit]
        tags.append(OpcUaTag(
            tag=t.id,
            node_id=b.node_id,
            data_type=DataType.parse(b.data_type),
            direction=UaDirection.SETPOINT if t.direction is Direction.SETPOINT else UaDirection.MEASUREMENT,
            sampling_interval_s=parse_duration(b.sampling_interval) / k,
            deadband=b.deadband,
            scale=d.factor,
            offset=d.offset,
            max_age_s=t.max_age_s / k,
        ))
    hb = site.config.controller.heartbeat
    if hb is not None:
        tags.append(OpcUaTag(HEARTBEAT_TAG, hb.node_id, DataType.parse(hb.data_type), UaDirection.SETPOINT,
                             sampling_interval_s=parse_duration(hb.sampling_interval) / k))
    cfg = site.config.adapters.opcua
    base = site.path.parent
    watchdog, hang = 1.0, 8.0
    if cfg is not None:
        watchdog, hang = parse_duration(cfg.watchdog_period), parse_duration(cfg.reconnect_hang)
    if insecure or cfg is None:
        security = OpcUaSecurity(policy=SecurityPolicy.NONE, mode=SecurityMode.NONE)
        timeout = 5.0
    else:
        security = OpcUaSecurity(
            policy=SecurityPolicy.AES128_SHA256_RSAOAEP if cfg.security_policy == "Aes128Sha256RsaOaep"
            else SecurityPolicy(cfg.security_policy),
            mode=SecurityMode(cfg.security_mode),
            cert_path=base / cfg.certificate if cfg.certificate else None,
            key_path=base / cfg.private_key if cfg.private_key else None,
            trust_dir=base / cfg.trust_dir if cfg.trust_dir else None,
            application_uri=cfg.application_uri,
            username=cfg.username,
            password=resolve(cfg.password, "OPC UA password", credentials_dir),
        )
        timeout = parse_duration(cfg.timeout)
    if endpoint is None:
        if cfg is None:
            raise ValueError("the config has no adapters.opcua section")
        endpoint = cfg.endpoint
    return OpcUaConfig(
        endpoint=endpoint,
        tags=tuple(tags),
        security=security,
        timeouts=OpcUaTimeouts(connect_s=timeout, request_s=timeout),
        watchdog_period_s=max(watchdog / k, 0.05),
        reconnect_hang_s=hang,
        publishing_interval_s=max(0.5 / k, 0.02),
    )


class ProfileForecasts:
    """Forecasts from the config's profiles: every unit's profile inputs and every price, on any time grid.

    Series names: ``<unit>.<input>`` (e.g. ``town.demand``) [SI], ``price.<name>`` [currency/J] and
    ``price.co2`` [currency/kg]. The built-in forecaster and external forecasts replace these where they
    exist; profiles are the last resort that always covers the horizon.
    """

    def __init__(self, site: LoadedSite, t0_epoch: float) -> None:
        self.t0 = t0_epoch
        spec = site.park_spec()
        self.series: dict[str, object] = {}
        for u in spec.units:
            for inp, pid in u.profiles.items():
                self.series[f"{u.name}.{inp}"] = spec.profiles[pid]
        c = site.config.controller
        for name, value in c.prices.items():
            if isinstance(value, str) and value in spec.profiles:
                self.series[f"price.{name}"] = spec.profiles[value]
            else:
                self.series[f"price.{name}"] = parse_quantity(value, "EUR/J")
        self.series["price.co2"] = parse_quantity(c.co2_price, "EUR/kg")
        self.overrides: dict[str, float] = {}  # multipliers, e.g. a price spike in a scenario

    def __call__(self, now: float, times: Sequence[float]) -> Mapping[str, Sequence[float]]:
        t = np.asarray(times, dtype=float) - self.t0
        out: dict[str, Sequence[float]] = {}
        for name, s in self.series.items():
            values = s.at(t) if hasattr(s, "at") else np.full(t.shape, float(s))  # type: ignore[attr-defined, arg-type]
            out[name] = (values * self.overrides.get(name, 1.0)).tolist()
        return out
