"""A forecast published on a real mosquitto broker during a run changes the horizon handed to the controller.

Until the MPC exists, "the next plan" is checked one step earlier: the horizon the controller interface
(``HorizonAssembler.assemble``) hands over changes, and every step records ``mqtt:<topic>`` as its source.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from adapters.mqtt import MqttConfig
from symtwin.forecasting.horizon import AlarmKind, ForecastHorizon, HorizonAssembler, ValidationRules
from symtwin.forecasting.sources import MqttForecastListener, PahoForecastSubscriber, ProfileForecastSource
from tests.support.servers import Mosquitto
from tests.support.tls import TestPki
from twin.spec import Profile

TOPIC = "park/forecast/town_heat_demand"
STEP = 3600.0
PROFILE_W = 5.0e6


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Iterator[Callable[[bytes], None]]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forecast-publisher")
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()

    def publish(payload: bytes) -> None:
        client.publish(TOPIC, payload, qos=1).wait_for_publish(timeout=5)

    yield publish
    client.disconnect()
    client.loop_stop()


def wait_for(
    assemble: Callable[[], ForecastHorizon], done: Callable[[ForecastHorizon], bool]
) -> ForecastHorizon:
    deadline = time.monotonic() + 5.0
    while True:
        h = assemble()
        if done(h) or time.monotonic() > deadline:
            return h
        time.sleep(0.02)


def test_forecast_published_on_mqtt_changes_the_horizon_handed_to_the_controller(
    mosquitto: Mosquitto, publisher: Callable[[bytes], None]
) -> None:
    listener = MqttForecastListener(TOPIC, step_s=STEP, scale=1e6)  # payload in MW
    subscriber = PahoForecastSubscriber(
        MqttConfig(mosquitto.host, mosquitto.port, client_id="symtwin-forecast"), [listener]
    )
    start = time.time()
    profile = ProfileForecastSource(
        Profile("town_heat_demand", np.array([0.0]), np.array([PROFILE_W])), start
    )
    assembler = HorizonAssembler(
        [
            (listener, ValidationRules(max_age_s=2 * 3600.0, bounds=(0.0, 50e6), expected_points=12)),
            (profile, ValidationRules()),
        ]
    )
    subscriber.start()
    try:
        assert subscriber.subscribed.wait(5.0), "no SUBACK from mosquitto"

        issue = start - start % STEP
        grid = issue + STEP * np.arange(1, 13)  # the MPC's grid: whole hours after the start, fixed

        def assemble() -> ForecastHorizon:
            return assembler.assemble(time.time(), grid)

        before = assemble()
        assert set(before.sources) == {"profile:town_heat_demand"}
        np.testing.assert_allclose(before.values, PROFILE_W)

        # a forecast older than its maximum age is refused: the horizon stays on the profile, with an alarm
        publisher(json.dumps([issue - 3 * 3600.0, *[9.0] * 15]).encode())
        stale = wait_for(assemble, lambda h: assembler.counters[f"{listener.name}:expired"] > 0)
        assert set(stale.sources) == {"profile:town_heat_demand"}
        assert any(a.kind is AlarmKind.EXPIRED and a.source == listener.name for a in stale.alarms)

        # a fresh one, published mid-run, takes over every step
        forecast_mw = [3.0 + 0.1 * k for k in range(12)]
        publisher(json.dumps([issue, *forecast_mw]).encode())
        after = wait_for(assemble, lambda h: h.sources[0] == listener.name)
    finally:
        subscriber.stop()
    assert set(after.sources) == {listener.name}
    np.testing.assert_allclose(after.values, np.asarray(forecast_mw) * 1e6)
    assert not np.allclose(after.values, before.values)
    assert listener.counts["received"] == 2 and listener.counts["malformed"] == 0


def test_forecast_subscriber_logs_in_over_tls(tls_broker: tuple[Mosquitto, TestPki]) -> None:
    """The subscriber uses the broker config's TLS and login (a plant broker refuses anonymous clients)."""
    broker, pki = tls_broker
    listener = MqttForecastListener(TOPIC, step_s=STEP, scale=1e6)
    cfg = MqttConfig(
        "localhost", broker.port, client_id="fc-tls", username="plant", password="s3cret", tls_ca=pki.ca
    )
    subscriber = PahoForecastSubscriber(cfg, [listener])
    subscriber.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fc-tls-publisher")
    pub.tls_set(ca_certs=str(pki.ca))
    pub.username_pw_set("plant", "s3cret")
    try:
        assert subscriber.subscribed.wait(5.0), "no SUBACK over TLS"
        pub.connect("localhost", broker.port)
        pub.loop_start()
        now = time.time()
        body = {"issued_at": now, "start": now - now % STEP + STEP, "step_s": STEP, "values": [7.0] * 4}
        pub.publish(TOPIC, json.dumps(body).encode(), qos=1).wait_for_publish(timeout=5)
        deadline = time.monotonic() + 5.0
        while listener.forecast(now, np.array([now + STEP])) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        fc = listener.forecast(now, np.array([now + STEP]))
        assert fc is not None
        assert np.allclose(fc.values, 7.0e6)
    finally:
        pub.disconnect()
        pub.loop_stop()
        subscriber.stop()


def test_forecast_subscriber_without_the_login_gets_nothing(tls_broker: tuple[Mosquitto, TestPki]) -> None:
    """Without credentials the broker refuses the subscriber: no subscription, and the feed falls back."""
    broker, pki = tls_broker
    listener = MqttForecastListener(TOPIC, step_s=STEP, scale=1e6)
    subscriber = PahoForecastSubscriber(
        MqttConfig("localhost", broker.port, client_id="fc-anon", tls_ca=pki.ca), [listener]
    )
    subscriber.start()
    try:
        assert not subscriber.subscribed.wait(2.0)
    finally:
        subscriber.stop()
