# make run  [ARGS="--port 5673 ..."]      run the broker from ./.venv
# make test [PYTEST_ARGS="tests/unit -q"]  run the test suite from ./.venv
# Both create ./.venv (with $(PYTHON)) if missing, and (re)install the project editable with its
# [test] extras whenever pyproject.toml is newer than the last install. `make test` also installs
# the non-Python clients the suite runs (amqp-tools, Node's amqplib) when they are missing.
# make compile    compile the hot path in place with mypyc (README "Compiling the hot path");
#                 the .so files next to the sources then take precedence over them
# make uncompile   remove them: back to the interpreted source

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.amqp-broker-installed
CLIENTS_STAMP := interop/clients/node/node_modules/.amqp-broker-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test install compile uncompile

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

compile: $(STAMP)
	$(VENV)/bin/python -m pip install --disable-pip-version-check --quiet 'mypy>=1.11'
	AMQP_BROKER_COMPILE=1 $(VENV)/bin/python setup.py --quiet build_ext --inplace

uncompile:
	rm -f amqp_broker/*.so amqp_broker/*/*.so
