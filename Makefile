# Everything a fresh Debian machine needs is set up by these targets on first use:
# a Python venv (.venv) and the MicroPython unix port (cached in ~/.cache/mpocpp).
.PHONY: run test test-long bench setup micropython frozen clean deploy bundle

VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

setup: $(VENV)/.requirements.stamp micropython

$(VENV)/.requirements.stamp: tools/requirements.txt
	@tools/setup-venv

micropython:
	@echo "[make] MicroPython unix port: $$(tools/micropython | tail -n1)"

## make frozen: the 32-bit unix port with lib/, firmware/ and the simulated board frozen
## in (what make bench measures; tools/sim runs it: MICROPYTHON=<its path> tools/sim ...)
frozen: setup
	@echo "[make] frozen 32-bit unix port: $$(tools/build-frozen | tail -n1)"

## make run: a simulated charger against the development central system, scripted session
run: setup
	@$(PY) tools/demo.py

# Three pytest workers (pytest-xdist), also on 2 cores: the tests are independent (own
# ports, own state directories), and most of their time is spent waiting on the simulator
# (with two workers the 2 cores were half idle: 8.9 min; with three 6.3 min).  A file goes
# to one worker (loadfile): a device module runs as one MicroPython process, and two of
# them would share its scratch directory.
TEST_WORKERS ?= 3

## make test: the whole suite (device code runs on the MicroPython unix port)
test: setup
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## make test-long: adds the long optional runs
test-long: setup
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --run-slow $(PYTEST_ARGS)

## make bench: memory (32-bit frozen, 32-bit .mpy, 64-bit source), allocation and
## throughput figures; writes bench.json and the README's figures table
bench: setup
	@$(PY) tools/bench.py

## make deploy PORT=/dev/ttyUSB0 BOARD=esp32_s0: copy firmware to a board with mpremote
## (DEPLOY_ARGS: more tools/deploy.py options, e.g. --update-key keys/app.key.pub)
deploy: setup
	@$(PY) tools/deploy.py --port "$(PORT)" --board "$(BOARD)" $(DEPLOY_ARGS)

## make bundle KEY=app.key VERSION=1.4.0 BOARD=esp32_s0 OUT=app-1.4.0.bin: a signed
## application bundle for UpdateFirmware (tools/bundle.py; key pair: tools/bundle.py keygen
## FILE; BUNDLE_ARGS=--py for source files, --march rv32imc for an ESP32-C3/C6)
bundle: setup
	@$(PY) tools/bundle.py make --key "$(KEY)" --version "$(VERSION)" --board "$(BOARD)" \
		--out "$(OUT)" $(BUNDLE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
