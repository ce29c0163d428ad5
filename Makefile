# desktop-runner: `make demo` to watch your screen in a browser, `make test` to run every test.
# Both install what they need first (idempotently) with scripts/setup.sh.

PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

bench: setup
	$(PY) bench/bench_e2ee.py
	$(PY) bench/bench_input.py

clean:
	rm -rf .venv node_modules .pytest_cache .hypothesis build *.egg-info
