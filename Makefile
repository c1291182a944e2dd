.PHONY: run cluster test lint format worker clean bench

# Set up everything (venv, services, database, demo data) and run the whole stack in the foreground.
run:
	@scripts/run.sh

# The production shape on one machine, in the foreground: HAProxy on :8000 in front of three nodes,
# a worker, beat, and a local Redis Cluster when supported (docs/OPERATIONS.md, "make cluster").
# scripts/rolling_restart.sh restarts its nodes one at a time.
cluster:
	@scripts/cluster.sh

# The whole test suite against real PostgreSQL, Redis, Celery workers, ASGI servers and HAProxy; first the
# JavaScript client is built and its size checked (scripts/js.sh), its tests run within pytest.
test:
	@scripts/venv.sh requirements-dev.txt
	@CHORUS_NEED_RABBITMQ=1 scripts/services.sh
	@scripts/browser.sh
	@scripts/haproxy.sh
	@scripts/js.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# ruff (lint, then the format check) and mypy with the Django, DRF and Celery stubs (pyproject.toml);
# the same checks pre-commit runs (.pre-commit-config.yaml). mypy's Django plugin loads the settings,
# which need this checkout's secret key.
lint:
	@scripts/venv.sh requirements-dev.txt
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	@scripts/secret_key.sh
	.venv/bin/mypy .

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

worker:
	@scripts/secret_key.sh
	.venv/bin/celery -A project worker --loglevel=INFO --concurrency=2

clean:
	rm -rf .venv staticfiles .pytest_cache .ruff_cache .mypy_cache .celerybeat-schedule* clients/js/node_modules clients/js/dist

# Benchmarks, each against a baseline measured in the same run (docs/BENCHMARKS.md): all of them,
# or one with BENCH=fanout|writepath|connections|scale|sequencer; BENCH_ARGS go to the benchmark(s) run, e.g.
# BENCH=writepath BENCH_ARGS="--quick" make bench. BENCH=scale needs HAProxy and Redis 7 (make cluster's).
BENCH ?= all
# Every tree a benchmark runs (its baseline checkouts too) gets this checkout's local secret key.
BENCH_SECRET = DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat "$${CHORUS_SECRET_KEY_FILE:-.secret-key}")}"
bench:
	@scripts/venv.sh requirements-dev.txt
	@scripts/services.sh
	@scripts/secret_key.sh
	@case "$(BENCH)" in all|fanout|writepath|connections|scale|sequencer) ;; *) echo "BENCH must be all, fanout, writepath, connections, scale or sequencer"; exit 2 ;; esac
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = fanout ]; then \
	  export $(BENCH_SECRET); DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chorus_bench} \
	  REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/11} CHORUS_REDIS_PREFIX=chorus-bench \
	  .venv/bin/python bench/fanout.py $(BENCH_ARGS); fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = sequencer ]; then \
	  export $(BENCH_SECRET); DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chorus_bench} \
	  REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/11} CHORUS_REDIS_PREFIX=chorus-bench \
	  .venv/bin/python bench/sequencer.py $(BENCH_ARGS); fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = writepath ]; then \
	  export $(BENCH_SECRET); .venv/bin/python bench/writepath.py $(BENCH_ARGS); fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = connections ]; then \
	  export $(BENCH_SECRET); DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chorus_bench} \
	  REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/11} CHORUS_REDIS_PREFIX=chorus-bench \
	  .venv/bin/python bench/connections.py $(BENCH_ARGS); fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = scale ]; then \
	  export $(BENCH_SECRET); .venv/bin/python bench/scale.py $(BENCH_ARGS); fi
