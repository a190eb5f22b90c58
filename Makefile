# The two commands a newcomer needs: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
MNT     ?= $(CURDIR)/mnt
APT_PKGS := fuse3 libfuse3-3 procps smem lsof psmisc sysstat htop tmux net-tools prometheus-node-exporter
BENCH_APT_PKGS := libfuse3-dev pkg-config gcc

.PHONY: run test bench deps sysdeps clean

# System packages: the FUSE library and the real tools the tests drive.
sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

$(BIN)/procsim: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[test,plot]'
	@touch $@

deps: sysdeps $(BIN)/procsim

run: deps
	@mkdir -p $(MNT)
	@echo "Mounting the default machine at $(MNT) (Ctrl-C unmounts). Try, in another shell:"
	@echo "  cat $(MNT)/proc/meminfo; grep Cpus_active_mm $(MNT)/proc/*/status"
	@echo "  $(BIN)/procsim run -- ps aux      # or top -b -n 1, free, vmstat 1 3"
	@echo "  $(BIN)/procsim ctl $(MNT) ps"
	$(BIN)/procsim mount $(MNT) --clock wall

test: deps
	$(BIN)/python -m pytest -q

bench: deps
	@missing=""; for p in $(BENCH_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) *.egg-info
