# The Pythons m2m-gateway runs on (README). The first of PYTHON_CANDIDATES that
# is one of them, each tried by running it: a pyenv shim exists for every version
# pyenv has, and fails for one it does not provide. `make PYTHON=...` chooses.
SUPPORTED_PYTHONS := 3.11 3.12 3.13
PYTHON_CANDIDATES := python3 python3.13 python3.12 python3.11
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do \
	case " $(SUPPORTED_PYTHONS) " in \
	(*" $$($$p -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) "*) echo $$p; break;; esac; done)
NO_PYTHON := none of $(PYTHON_CANDIDATES) on PATH is one
else
NO_PYTHON = PYTHON=$(PYTHON) $(if $(PYTHON_ID),is Python $(firstword $(PYTHON_ID)),does not run)
endif
# Its version and real path, e.g. "3.13 /usr/bin/python3.13"; empty when it does not run.
PYTHON_ID := $(if $(PYTHON),$(shell $(PYTHON) -c 'import os, sys; print("%d.%d" % sys.version_info[:2], os.path.realpath(sys.executable))' 2>/dev/null))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENV_PYTHON_ID := $(VENV)/.python

.PHONY: run test test-fast wsdl clean FORCE

# PYTHON_ID of the interpreter .venv was built with: when it is not the one
# chosen now, .venv is built anew with the one chosen now.
$(VENV_PYTHON_ID): FORCE
	$(if $(filter $(SUPPORTED_PYTHONS),$(firstword $(PYTHON_ID))),,$(error m2m-gateway needs Python 3.11, 3.12 or 3.13: $(NO_PYTHON); install one, or choose one with make PYTHON=/path/to/python3.13))
	@if [ "$$(cat $@ 2>/dev/null)" != "$(PYTHON_ID)" ]; then \
		echo "$(VENV): Python $(PYTHON_ID)"; \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && echo "$(PYTHON_ID)" > $@; \
	fi
FORCE:

$(STAMP): $(VENV_PYTHON_ID) setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# DEMO_ARGS: e.g. --listener-port 9082 --config FILE
run: $(STAMP)
	$(BIN)/m2m-gateway demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: the in-process part of the suite, in well under 30 s; what
# needs a server process of its own (pytest.mark.process) is left to `make test`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not process" $(PYTEST_ARGS)

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

# Benchmarks (bench/RESULTS.md): each prints its figures beside their targets and
# how busy the machine was, about 4 minutes in all,
# each bounded by `timeout`; not part of `make test`. wrk is installed when
# missing if possible (else a Python load generator is used).
.PHONY: bench
bench: $(STAMP)
	@command -v wrk >/dev/null || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1; } || true
	timeout 240 $(BIN)/python -m bench.bulk_translation --profile
	timeout 300 $(BIN)/python -m bench.small_requests --profile
	timeout 300 $(BIN)/python -m bench.callback_bridge --profile
	timeout 300 $(BIN)/python -m bench.callback_bridge --store postgresql

# The toolkit matrix (interop/README.md): PHP, gSOAP, JAX-WS, Axis 1, Mono,
# Perl, Ruby, node-soap, strong-soap, zeep and suds import the served WSDLs,
# call LogIn and GoToState through the gateway and the simulator, and read an
# expired session's fault and a client fault. Installs the Debian and npm
# packages it lacks (a toolkit still missing fails the run); about 2 minutes
# after that.
.PHONY: interop
interop: $(STAMP)
	$(BIN)/python interop/run.py $(INTEROP_ARGS)
