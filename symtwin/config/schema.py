"""Typed schema of a site config. Unknown keys are refused everywhere (``extra="forbid"``).

Values that carry units are kept as written here (``"10 bar"``); ``symtwin.config.site`` converts them to
SI once, after validation, and builds the frozen objects the service runs on.
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

Id = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$", max_length=64)]
TagId = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$", max_length=128)]
QuantityText = str | float | int  # "10 bar" or a number in the field's SI unit


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """Where a secret comes from: an environment variable or a systemd credential file, never the config."""

    env: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.credential is None):
            raise ValueError("give exactly one of 'env' (an environment variable) or 'credential' (a file name)")
        return self


def _no_plain_secret(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "a secret must not be written in the config in plain text; use {env: VARIABLE_NAME} or "
            "{credential: NAME} (read from $CREDENTIALS_DIRECTORY)"
        )
    return value


SecretField = Annotated[SecretRef | None, BeforeValidator(_no_plain_secret)]


class Site(Strict):
    name: str
    description: str = ""
    timezone: str = "UTC"
    start: str | None = Field(default=None, description="ISO date-time of t = 0 for profiles and simulations")
    holidays: list[datetime.date] = Field(default_factory=list, description="public holidays (YYYY-MM-DD)")


class Party(Strict):
    id: Id
    name: str
    role: str = ""


class Unit(BaseModel):
    """A unit. Besides the fields below it takes the parameters of its model (see ``symtwin schema``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: Id
    owner: Id
    model: str
    description: str = ""
    fuel: str | None = Field(default=None, description="fuel name, priced in controller.prices")
    profiles: dict[str, Id] = Field(default_factory=dict, description="profile input → profile id")


class Connection(Strict):
    id: Id
    source: str = Field(alias="from", description="unit.port")
    target: str = Field(alias="to", description="unit.port")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("source", "target")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*\.[A-Za-z][A-Za-z0-9_]*", v):
            raise ValueError("expected '<unit id>.<port>', e.g. 'chp.steam_out'")
        return v


class Exchange(Strict):
    id: Id
    connection: Id
    contract: Id
    description: str = ""


class Direction(enum.StrEnum):
    MEASUREMENT = "measurement"
    SETPOINT = "setpoint"


class OpcUaBinding(Strict):
    node_id: str
    data_type: Literal["Double", "Float", "Int16", "Int32", "UInt16", "Boolean"] = "Double"
    sampling_interval: QuantityText = "1 s"
    deadband: float = Field(default=0.0, ge=0.0)


class MqttBinding(Strict):
    topic: str
    pointer: str = Field(default="/value", description="JSON pointer to the value in the payload")
    timestamp_pointer: str | None = Field(
        default="/ts", description="JSON pointer to the timestamp (epoch, or ISO 8601 text) or null"
    )
    timestamp_unit: Literal["s", "ms"] = Field(
        default="s", description="unit of a numeric timestamp: epoch seconds or milliseconds"
    )
    format: Literal["json", "sparkplug"] = "json"


class Binding(Strict):
    opcua: OpcUaBinding | None = None
    mqtt: MqttBinding | None = None
    sim: bool = Field(default=False, description="produced by the virtual plant only (no field binding)")

    @model_validator(mode="after")
    def _exactly_one(self) -> Binding:
        if sum(x is not None and x is not False for x in (self.opcua, self.mqtt, self.sim or None)) != 1:
            raise ValueError("a binding has exactly one of 'opcua', 'mqtt' or 'sim: true'")
        return self


class Tag(Strict):
    id: TagId
    owner: Id
    unit: Id
    quantity: str
    eng_unit: str = Field(default="1", description="engineering unit of values on the wire, e.g. 'degC', 'MW', '%'")
    direction: Direction
    max_age: QuantityText = "60 s"
    noise: float = Field(default=0.0, ge=0.0, description="measurement noise standard deviation [eng_unit]")
    bounds: tuple[float, float] | None = Field(default=None, description="[low, high] in eng_unit")
    rate_limit: str | None = Field(default=None, description="largest change per time, e.g. '2 %/min'")
    safe_value: float | None = Field(default=None, description="value written on fallback/shutdown [eng_unit]")
    binding: Binding


class CsvProfile(Strict):
    path: str
    time_column: str = "Time"
    value_column: str
    time_unit: str = "s"
    scale: float = Field(default=1.0, description="value = raw * scale + offset, in the profile's unit")
    offset: float = 0.0


class InlineProfile(Strict):
    step: QuantityText
    values: list[float] = Field(min_length=1)


class Profile(Strict):
    id: Id
    unit: str = Field(default="1", description="engineering unit of the values (after scale)")
    interpolation: Literal["linear", "step"] = "linear"
    period: QuantityText | None = None
    csv: CsvProfile | None = None
    inline: InlineProfile | None = None
    formula: str | None = Field(default=None, description="expression in t [s], e.g. '0.6 + 0.3*sin(2*pi*t/86400)'")
    formula_step: QuantityText = "15 min"
    formula_span: QuantityText = "1 d"
    note: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> Profile:
        if sum(x is not None for x in (self.csv, self.inline, self.formula)) != 1:
            raise ValueError("a profile has exactly one of 'csv', 'inline' or 'formula'")
        return self


class Mode(enum.StrEnum):
    OFF = "off"
    SHADOW = "shadow"
    AUTO = "auto"


class Controller(Strict):
    kind: Literal["mpc", "baseline"] = "mpc"
    mode: Mode = Mode.SHADOW
    period: QuantityText = "15 min"
    horizon: QuantityText = "24 h"
    step: QuantityText = "15 min"
    deadline_fraction: float = Field(default=0.8, gt=0.0, le=1.0)
    max_consecutive_failures: int = Field(default=3, ge=1)
    prices: dict[str, QuantityText] = Field(
        default_factory=dict, description="price name → profile id or value, e.g. wood_chips: '25 EUR/MWh'"
    )
    co2_price: QuantityText = "80 EUR/t"
    unmet_demand_penalty: QuantityText = "2000 EUR/MWh"
    move_penalty: float = Field(default=1e-3, ge=0.0)
    cycle: QuantityText = Field(default="5 s", description="supervision cycle: inputs judged, setpoints ramped")
    heartbeat: OpcUaBinding | None = Field(
        default=None, description="OPC UA node the service increments every cycle (Int32); the PLC watches it"
    )


class ForecastMqtt(Strict):
    """Forecasts published on an MQTT topic (the park broker of ``adapters.mqtt``)."""

    topic: str = Field(min_length=1)
    encoding: Literal["json", "sparkplug"] = "json"
    unit: str | None = Field(default=None, description="unit of the values on the wire (default: the forecast's unit)")
    max_age: QuantityText = Field(default="6 h", description="older forecasts expire: alarm, next source")
    points: int | None = Field(default=None, ge=1, description="values a complete forecast has (None: any)")
    step: QuantityText = Field(default="1 h", description="spacing of [issued_at, v1, ...] array payloads")
    metric: str = Field(default="forecast", description="Sparkplug metric name carrying the points")


class ForecastCsv(Strict):
    """A forecast file (columns time,value[,issued_at]) re-read whenever it changes; it may not exist yet."""

    path: str = Field(min_length=1)
    unit: str | None = Field(default=None, description="unit of the values (default: the forecast's unit)")
    max_age: QuantityText = "24 h"


class ForecastModelSource(Strict):
    """The built-in forecaster (a JSON model file from `symtwin forecast train`)."""

    file: str = Field(min_length=1)
    max_age: QuantityText = "2 h"
    temperature: Id | None = Field(default=None, description="profile id of the outdoor temperature forecast")


class ForecastInput(Strict):
    """One controller series fed from forecasts: MQTT, then CSV, then the model, then the config profile."""

    id: Id
    series: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_\-]*\.[A-Za-z][A-Za-z0-9_]*$",
        description="the controller's series it replaces: '<unit>.<profile input>' or 'price.<name>'",
    )
    unit: str = Field(default="1", description="unit of bounds (and of the sources unless they say otherwise)")
    bounds: tuple[QuantityText, QuantityText] | None = Field(
        default=None, description="[low, high]; values outside are dropped (numbers in 'unit' or '50 MW')"
    )
    max_gap: QuantityText = Field(default="3 h", description="longest gap between points that is interpolated")
    profile: Id | None = Field(default=None, description="last resort (default: the profile the series uses now)")
    mqtt: ForecastMqtt | None = None
    csv: ForecastCsv | None = None
    model: ForecastModelSource | None = None


class Aggregated(Strict):
    aggregated: QuantityText


Resolution = Literal["raw", "none"] | Aggregated


class SharingGroup(Strict):
    id: Id
    tags: list[TagId] = Field(min_length=1)


class SharingRule(Strict):
    group: Id
    recipient: Id
    resolution: Resolution


class Sharing(Strict):
    groups: list[SharingGroup] = Field(default_factory=list)
    rules: list[SharingRule] = Field(default_factory=list)


class FixedPrice(Strict):
    rule: Literal["fixed"]
    eur_per_mwh: float


class IndexedPrice(Strict):
    rule: Literal["indexed"]
    a_eur_per_mwh: float
    b_gas: float = Field(description="× gas price [EUR/MWh]")
    c_co2: float = Field(description="× CO2 price [EUR/t]")


class CostPlusPrice(Strict):
    rule: Literal["cost_plus"]
    margin: float = Field(ge=-1.0, le=10.0)


class ShareOfSavingsPrice(Strict):
    rule: Literal["share_of_savings"]
    supplier_share: float = Field(ge=0.0, le=1.0)


PriceRule = Annotated[FixedPrice | IndexedPrice | CostPlusPrice | ShareOfSavingsPrice, Field(discriminator="rule")]


class Contract(Strict):
    id: Id
    price: PriceRule
    min_delivery_mwh: float = Field(default=0.0, ge=0.0)
    max_delivery_mwh: float | None = Field(default=None, ge=0.0)
    take_or_pay_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    penalty_eur_per_mwh: float = Field(default=0.0, ge=0.0)
    settlement_period: Literal["day", "week", "month", "quarter", "year"] = "month"

    @model_validator(mode="after")
    def _min_below_max(self) -> Contract:
        if self.max_delivery_mwh is not None and self.max_delivery_mwh < self.min_delivery_mwh:
            raise ValueError("max_delivery_mwh is below min_delivery_mwh")
        return self


class OpcUaAdapter(Strict):
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security_policy: Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep"] = "Basic256Sha256"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    allow_insecure: bool = Field(default=False, description="must be true to use security_policy None")
    application_uri: str = "urn:symtwin:client"
    certificate: str | None = None
    private_key: str | None = None
    trust_dir: str | None = None
    username: str | None = None
    password: SecretField = None
    timeout: QuantityText = "5 s"
    watchdog_period: QuantityText = "1 s"
    reconnect_hang: QuantityText = Field(
        default="8 s", description="build a fresh client when a reconnect has not recovered for this long"
    )

    @model_validator(mode="after")
    def _insecure_explicit(self) -> OpcUaAdapter:
        if (self.security_policy == "None" or self.security_mode == "None") and not self.allow_insecure:
            raise ValueError("security None needs 'allow_insecure: true' (the link is then unauthenticated)")
        return self


class MqttTls(Strict):
    ca: str
    cert: str | None = None
    key: str | None = None


class MqttAdapter(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = "symtwin"
    username: str | None = None
    password: SecretField = None
    tls: MqttTls | None = None
    keepalive: QuantityText = "30 s"


class InfluxAdapter(Strict):
    url: str = Field(pattern=r"^https?://")
    org: str = "park"
    bucket: str = "symtwin"
    token: SecretField = None
    batch_lines: int = Field(default=5000, ge=1, le=100_000)
    # how `symtwin settle --store influx` reads history back: Flux (InfluxDB 2.x/3.x), victoria-metrics'
    # export API (it takes the v2 write API but no Flux), or auto (asks the store's /health)
    query_api: Literal["auto", "flux", "victoria-metrics"] = "auto"
    # "per-party" also writes each party's buckets as planned by `symtwin governance influx` (own data raw
    # to <prefix>-<party>, what the sharing policy grants to <prefix>-<owner>-to-<recipient>)
    buckets: Literal["single", "per-party"] = "single"
    bucket_prefix: str = Field(default="symtwin", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Outbox(Strict):
    path: str = "var/outbox.sqlite"
    max_bytes: QuantityText = "512 MB"


class History(Strict):
    path: str = "var/history.sqlite"
    retention: QuantityText = "30 d"


class Adapters(Strict):
    opcua: OpcUaAdapter | None = None
    mqtt: MqttAdapter | None = None
    influx: InfluxAdapter | None = None
    outbox: Outbox = Outbox()
    history: History = History()


class WebUser(Strict):
    name: Id
    party: Id
    role: Literal["operator", "viewer"] = "viewer"
    password_hash: str | SecretRef = Field(
        description="scrypt hash from `symtwin web hash-password` (never the password itself), or {env: NAME}"
    )

    @field_validator("password_hash")
    @classmethod
    def _is_hash(cls, v: str | SecretRef) -> str | SecretRef:
        if isinstance(v, str) and not v.startswith("scrypt$"):
            raise ValueError("expected a password hash 'scrypt$...' (run `symtwin web hash-password`), not a password")
        return v


class Web(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    session_ttl: QuantityText = "8 h"
    users: list[WebUser] = Field(default_factory=list)


class SiteConfig(Strict):
    """A park: who owns what, how units connect, which tags bind them to the plant, and the rules."""

    version: Literal[1] = 1
    site: Site
    parties: list[Party] = Field(min_length=1)
    units: list[Unit] = Field(min_length=1)
    connections: list[Connection] = Field(default_factory=list)
    exchanges: list[Exchange] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    profiles: list[Profile] = Field(default_factory=list)
    forecasts: list[ForecastInput] = Field(default_factory=list)
    controller: Controller = Controller()
    sharing: Sharing = Sharing()
    contracts: list[Contract] = Field(default_factory=list)
    adapters: Adapters = Adapters()
    web: Web = Web()
