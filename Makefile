# desktop-runner: `make demo` to watch your screen in a browser, `make test` to run every test.
# Both install what they need first (idempotently) with scripts/setup.sh.

PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-unit bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

# The gates: ruff (rule set in pyproject.toml), mypy --strict on runner/, tsc --checkJs on viewer/.
lint: setup
	.venv/bin/ruff check runner tests scripts bench docker
	.venv/bin/mypy
	npm run --silent typecheck

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

# The suite behind the README's benchmark table (about 35 minutes; writes bench/results.json),
# the picture quality per bit against OpenH264 (about 15 minutes; bench/quality_results.*) and
# what the SDK's own path delivers on the same clips (about 5 minutes),
# then the E2EE throughput, sound (latency, A/V offset, CPU) and the input-latency micro-benchmarks,
# then slow and lossy links (about 15 minutes, root: network namespaces; bench/network.json and bench/network.md).
bench: setup
	$(PY) bench/run.py --markdown bench/results.md
	$(PY) bench/bench_quality.py
	$(PY) bench/bench_sdk_delivered.py
	$(PY) bench/bench_e2ee.py
	$(PY) bench/bench_audio.py
	$(PY) bench/bench_input.py
	$(PY) bench/bench_network.py --markdown bench/network.md

clean:
	rm -rf .venv node_modules .pytest_cache .hypothesis build *.egg-info
