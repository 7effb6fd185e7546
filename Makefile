# Two commands matter: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
export BLENDER_USER_RESOURCES ?= $(CURDIR)/build/blender-user

.PHONY: test lint typecheck pytest demo dist clean venv
# The bpy 4.5 and 4.2 LTS wheels run the smoke tier, each in its own venv (requirements-<tier>.txt).
LTS_TIERS ?= bpy45 bpy42

venv: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed: install it and retry (or make PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check onemin3d_addon scripts tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict onemin3d_addon/core
	$(VENV)/bin/mypy onemin3d_addon

# pytest exits 5 when it collected nothing: that is reported as its own error, never as a pass.
pytest: $(STAMP)
	@mkdir -p $(BLENDER_USER_RESOURCES)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

smoke-%: requirements-%.txt
	@scripts/make_venv.sh .venv-$* requirements-$*.txt $(PYTHON)
	@mkdir -p build/blender-user-$*
	@BLENDER_USER_RESOURCES=$(CURDIR)/build/blender-user-$* .venv-$*/bin/python -m pytest -m smoke -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: no smoke tests collected on $*" >&2; exit 1; fi; exit $$rc

test: lint typecheck pytest $(addprefix smoke-,$(LTS_TIERS))

dist: $(STAMP)
	$(PY) scripts/build_extension.py --split-platforms

demo: $(STAMP)
	@mkdir -p $(BLENDER_USER_RESOURCES)
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) .venv-bpy* build dist wheels out .mypy_cache .ruff_cache .pytest_cache
