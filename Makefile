.PHONY: demo test lint bench

demo:  ## the main job: the simulation-only reference park
	bash scripts/demo.sh $(ARGS)

test:  ## install everything the tests need and run the whole suite
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/mypy symtwin twin controllers adapters sim
