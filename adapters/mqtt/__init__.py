"""MQTT adapter: JSON and Sparkplug B payloads in, QoS 1 setpoint commands out (see README.md)."""

from adapters.mqtt.client import ConnectRefused, MqttAdapter, SubscribeRefused
from adapters.mqtt.config import MqttConfig, SetpointBinding
from adapters.mqtt.jsonpayload import JsonDecoder, JsonField, TimestampUnit, decode_json
from adapters.mqtt.router import MqttRouter
from adapters.mqtt.sparkplug import MetricKey, SparkplugHost, decode_payload, encode_payload, metric_key

__all__ = [
    "ConnectRefused",
    "JsonDecoder",
    "JsonField",
    "MetricKey",
    "MqttAdapter",
    "MqttConfig",
    "MqttRouter",
    "SetpointBinding",
    "SparkplugHost",
    "SubscribeRefused",
    "TimestampUnit",
    "decode_json",
    "decode_payload",
    "encode_payload",
    "metric_key",
]
