# make run  [ARGS="--port 5673 ..."]      run the broker from ./.venv
# make test [PYTEST_ARGS="tests/unit -q"]  run the test suite from ./.venv
# Both create ./.venv (with $(PYTHON)) if missing, and (re)install the project editable with its
# [test] extras whenever pyproject.toml is newer than the last install. `make test` also installs
# the non-Python clients the suite runs (amqp-tools, Node's amqplib) when they are missing.

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.amqp-broker-installed
CLIENTS_STAMP := interop/clients/node/node_modules/.amqp-broker-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test install

run: $(STAMP)
	$(VENV)/bin/amqp-broker $(ARGS)

test: $(STAMP) $(CLIENTS_STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet --editable '.[test]'
	touch $@

$(CLIENTS_STAMP): interop/clients/install-deps.sh interop/clients/node/package-lock.json
	interop/clients/install-deps.sh
	touch $@
