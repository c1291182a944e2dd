.PHONY: run test lint format worker clean bench bench-connections

# Set up everything (venv, services, database, demo data) and run the whole stack in the foreground.
run:
	@scripts/run.sh

# The whole test suite against real PostgreSQL, Redis, Celery workers and ASGI servers.
test:
	@scripts/venv.sh requirements-dev.txt
	@CHORUS_NEED_RABBITMQ=1 scripts/services.sh
	@scripts/browser.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint:
	@scripts/venv.sh requirements-dev.txt
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

worker:
	.venv/bin/celery -A project worker --loglevel=INFO --concurrency=2

clean:
	rm -rf .venv staticfiles .pytest_cache .ruff_cache .celerybeat-schedule*

# Fan-out load test against the Channels group_send baseline (a database and Redis DB of its own).
bench:
	@scripts/venv.sh requirements-dev.txt
	DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chorus_bench} \
	REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/11} CHORUS_REDIS_PREFIX=chorus-bench \
	.venv/bin/python bench/fanout.py $(BENCH_ARGS)

# Connects/s and memory per idle socket of one node, against the connect path of 0cf021f and the
# Channels tutorial consumer (a few minutes; BENCH_ARGS=--quick for about one).
bench-connections:
	@scripts/venv.sh requirements-dev.txt
	DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chorus_bench} \
	REDIS_URL=$${BENCH_REDIS_URL:-redis://127.0.0.1:6379/11} CHORUS_REDIS_PREFIX=chorus-bench \
	.venv/bin/python bench/connections.py $(BENCH_ARGS)
