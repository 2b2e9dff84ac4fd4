# climd: the two set-up-and-go commands are `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLIMD  := $(BIN)/climd
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch/torchvision: the releases that install from this machine kind's local disk.
ifeq ($(shell uname -m),aarch64)
TORCH  := torch==2.9.1 torchvision==0.24.1
else
TORCH  := torch==2.14.1 torchvision==0.29.1
endif
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test bench reproduce reproduce-quick clean

install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf cache .pytest_cache
