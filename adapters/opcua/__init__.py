"""OPC UA adapter (asyncua client): subscriptions in, typed setpoint writes out (see README.md)."""

from adapters.opcua.certs import CertificateError, ensure_certificate, generate_certificate
from adapters.opcua.client import OpcUaAdapter, OpcUaStats
from adapters.opcua.config import (
    DataType,
    Direction,
    OpcUaConfig,
    OpcUaConfigError,
    OpcUaSecurity,
    OpcUaTag,
    OpcUaTimeouts,
    SecurityMode,
    SecurityPolicy,
)
from adapters.opcua.security import SecurityRefused

__all__ = [
    "CertificateError",
    "DataType",
    "Direction",
    "OpcUaAdapter",
    "OpcUaConfig",
    "OpcUaConfigError",
    "OpcUaSecurity",
    "OpcUaStats",
    "OpcUaTag",
    "OpcUaTimeouts",
    "SecurityMode",
    "SecurityPolicy",
    "SecurityRefused",
    "ensure_certificate",
    "generate_certificate",
]
