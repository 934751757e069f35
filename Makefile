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

run: $(STAMP)
	$(BIN)/m2m-gateway demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

wsdl: $(STAMP)
	for s in CallbackRegistrationService SessionService StateService; do \
		$(BIN)/m2m-gateway wsdl $$s > wsdl/$$s.wsdl || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info
