"""atheris target: sparkplug (see README.md). Run: PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_sparkplug.py -runs=N"""

import atheris

with atheris.instrument_imports(include=["adapters", "symtwin"]):
    from tests.support.fuzzing import (
        Tally,
        feed_mqtt,
        json_router,
        run_atheris,
        spb_input,
    )

ROUTER = json_router()


def one(data: bytes, tally: Tally) -> None:
    feed_mqtt(ROUTER, tally, *spb_input(data))


if __name__ == "__main__":
    run_atheris("sparkplug", one)
