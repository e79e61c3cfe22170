# skiff: `make demo` and `make test` on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

# Everything the tests exercise for real: registry, peers, runtimes, monitor,
# networking, signing, and the busybox userland test images are made from.
APT_PACKAGES := python3-venv ca-certificates \
	docker-registry skopeo podman buildah umoci \
	busybox-static gnupg openssl \
	crun runc conmon catatonit netavark aardvark-dns containernetworking-plugins \
	golang-github-containers-common uidmap iproute2 iptables nftables \
	systemd zstd pigz hyperfine curl

.PHONY: all deps apt venv compile test test-unit lint fmt demo clean

all: test

apt:
	scripts/install-debian-packages $(APT_PACKAGES)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat  # a .pth path entry: no import hook on every start
	touch $@

# skiff starts for every command: byte-compile its modules once (the tests'
# and CI's environment may set PYTHONDONTWRITEBYTECODE, which only stops
# writing .pyc files, not reading them)
compile: venv
	$(BIN)/python -m compileall -q -j 0 skiff
	$(BIN)/python -m skiff.codecache  # the code dataclasses generate, kept like bytecode (skiff/codecache.py)

deps: apt venv compile

test: deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check skiff tests bench
	$(BIN)/ruff format --check skiff tests bench
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format skiff tests bench
	$(BIN)/ruff check --fix skiff tests bench

demo: deps
	scripts/demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
