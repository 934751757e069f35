# Spyne 2.14 needs Python 3.11 exactly (see README).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test wsdl clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# DEMO_ARGS: e.g. --listener-port 9082 --config FILE
run: $(STAMP)
	$(BIN)/m2m-gateway demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

wsdl: $(STAMP)
	for s in CallbackRegistrationService SessionService StateService; do \
		$(BIN)/m2m-gateway wsdl $$s > wsdl/$$s.wsdl || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info

# Debian packages the tests run for real, installed when missing: PostgreSQL
# (the store tests start a throwaway server of their own: initdb in a
# temporary directory, 127.0.0.1 only) and nginx (in front of the gateway).
.PHONY: deps
test: deps
deps:
	@missing=""; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# Benchmarks (bench/RESULTS.md): each prints its table, about 2 minutes in all,
# each bounded by `timeout`; not part of `make test`. wrk is installed when
# missing if possible (else a Python load generator is used).
.PHONY: bench
bench: $(STAMP)
	@command -v wrk >/dev/null || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1; } || true
	timeout 240 $(BIN)/python -m bench.bulk_translation --profile
	timeout 240 $(BIN)/python -m bench.small_requests --profile
	timeout 300 $(BIN)/python -m bench.callback_bridge --profile

# The toolkit matrix (interop/README.md): PHP, gSOAP, JAX-WS, Axis 1, Mono,
# Perl, Ruby, node-soap, strong-soap, zeep and suds import the served WSDLs and
# call LogIn and GoToState through the gateway and the simulator. Installs the
# Debian and npm packages it lacks; about 2 minutes after that.
.PHONY: interop
interop: $(STAMP)
	$(BIN)/python interop/run.py $(INTEROP_ARGS)
