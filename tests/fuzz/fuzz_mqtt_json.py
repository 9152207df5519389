"""atheris target: mqtt_json (see README.md). Run: PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_mqtt_json.py -runs=N"""

import atheris

with atheris.instrument_imports(include=["adapters", "symtwin"]):
    from tests.support.fuzzing import (
        JSON_TOPIC,
        Tally,
        feed_mqtt,
        json_router,
        run_atheris,
    )

ROUTER = json_router()


def one(data: bytes, tally: Tally) -> None:
    feed_mqtt(ROUTER, tally, JSON_TOPIC, data)


if __name__ == "__main__":
    run_atheris("mqtt_json", one)
