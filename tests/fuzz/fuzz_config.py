"""atheris target: config (see README.md). Run: PYTHONPATH=. .venv/bin/python tests/fuzz/fuzz_config.py -runs=N"""

import atheris

with atheris.instrument_imports(include=["adapters", "symtwin"]):
    from tests.support.fuzzing import (
        Tally,
        feed_config,
        json_router,
        run_atheris,
    )

ROUTER = json_router()


def one(data: bytes, tally: Tally) -> None:
    feed_config(data, tally)


if __name__ == "__main__":
    run_atheris("config", one)
