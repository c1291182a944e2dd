.PHONY: run test lint format worker clean

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
