# Two commands matter: `make demo` and `make test`. Both install what they need.
# Python 3.11 runs the main venv and the 4.x tiers; Python 3.13 the 5.1+ tiers. Each is looked up by
# scripts/find_python.sh (PATH, then pyenv's versions, then /usr/bin); PYTHON= and PYTHON313= override.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell scripts/find_python.sh 3.11 2>/dev/null)
endif
ifeq ($(origin PYTHON313),undefined)
PYTHON313 := $(shell scripts/find_python.sh 3.13 2>/dev/null)
endif
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
export BLENDER_USER_RESOURCES ?= $(CURDIR)/build/blender-user

.PHONY: test lint typecheck typecheck-latest pytest demo dist clean venv tiers real-blender-check
# Every supported Blender gets a tier of its own venv (requirements-<tier>.txt), made by `make test`:
# the main .venv (bpy 5.0.1, Python 3.11) and bpy53 (5.3.0, Python 3.13) run the whole suite; the
# other wheels run the smoke tier (`pytest -m smoke`), which proves what a user does on that version.
FULL_TIERS ?= bpy53
SMOKE_TIERS ?= bpy42 bpy45 bpy51 bpy52
# The Python each tier needs: bpy 4.x and 5.0 are Python 3.11 wheels, 5.1 and later Python 3.13.
tier_python = $(if $(filter bpy4% bpy50,$(1)),$(PYTHON),$(PYTHON313))
tier_python_version = $(if $(filter bpy4% bpy50,$(1)),3.11,3.13)

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -n "$(PYTHON)" || scripts/find_python.sh 3.11 >/dev/null
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check onemin3d_addon scripts tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict onemin3d_addon/core
	$(VENV)/bin/mypy onemin3d_addon

# The same checks against the newest Blender API: fake-bpy-module-latest (matching bpy 5.3), numpy 2
# and Python 3.13, in a venv of its own (`typecheck` above checks against the oldest, 4.2).
typecheck-latest: requirements-typecheck-latest.txt
	@test -n "$(PYTHON313)" || scripts/find_python.sh 3.13 >/dev/null
	@scripts/make_venv.sh .venv-typecheck-latest requirements-typecheck-latest.txt $(PYTHON313)
	.venv-typecheck-latest/bin/mypy --python-version 3.13 --cache-dir .mypy_cache/latest --strict onemin3d_addon/core
	.venv-typecheck-latest/bin/mypy --python-version 3.13 --cache-dir .mypy_cache/latest onemin3d_addon

# pytest exits 5 when it collected nothing: that is reported as its own error, never as a pass.
pytest: $(STAMP)
	@mkdir -p $(BLENDER_USER_RESOURCES)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

tier-venv-%: requirements-%.txt
	@test -n "$(call tier_python,$*)" || scripts/find_python.sh $(call tier_python_version,$*) >/dev/null
	@scripts/make_venv.sh .venv-$* requirements-$*.txt $(call tier_python,$*)

smoke-%: tier-venv-%
	@rm -rf build/blender-user-$* && mkdir -p build/blender-user-$*
	@echo "== smoke tier on $$(.venv-$*/bin/python -c 'import importlib.metadata as m, sys; print("bpy", m.version("bpy"), "/ Python", sys.version.split()[0])')"
	@BLENDER_USER_RESOURCES=$(CURDIR)/build/blender-user-$* .venv-$*/bin/python -m pytest -m smoke -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: no smoke tests collected on $*" >&2; exit 1; fi; exit $$rc

full-%: tier-venv-%
	@rm -rf build/blender-user-$* && mkdir -p build/blender-user-$*
	@echo "== full suite on $$(.venv-$*/bin/python -c 'import importlib.metadata as m, sys; print("bpy", m.version("bpy"), "/ Python", sys.version.split()[0])')"
	@BLENDER_USER_RESOURCES=$(CURDIR)/build/blender-user-$* .venv-$*/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: no tests collected on $*" >&2; exit 1; fi; exit $$rc

# every tier's venv, installed up front (a cold machine downloads each bpy wheel once)
tiers: $(STAMP) $(addprefix tier-venv-,$(FULL_TIERS) $(SMOKE_TIERS))

# The checks first; then the test tiers two at a time (the machine has 2 cores; each pytest is
# mostly one thread), each tier's output printed whole when it ends (-O). TEST_JOBS=1 runs them
# one after another.
TEST_JOBS ?= 2
TIER_TARGETS = pytest $(addprefix full-,$(FULL_TIERS)) $(addprefix smoke-,$(SMOKE_TIERS))
test: lint typecheck typecheck-latest
	@start=$$(date +%s); $(MAKE) --no-print-directory -j$(TEST_JOBS) -Otarget $(TIER_TARGETS); rc=$$?; \
	echo "test tiers: exit $$rc after $$(( $$(date +%s) - start )) s"; exit $$rc

dist: $(STAMP)
	$(PY) scripts/build_extension.py --split-platforms

# The built zip installed into real Blender binaries (Debian 13's 4.3 and unstable's 5.2 LTS, through
# ../shared/tools/real-blender), one relief each with `blender -b`: not part of `make test` (each
# Debian root is about 2 GB and 6 minutes to make once).
real-blender-check: dist
	scripts/real_blender_check.sh

# The add-on in real Blender windows, driven through its states and screenshotted, with the main
# thread's longest stall while a job runs (scripts/ui_test.sh): on Debian 13's Blender 4.3 and Debian
# unstable's 5.2.2 LTS, in Debian roots it makes once (about 2 GB each), or on $(BLENDER) when set.
# Not part of `make test`. UI_SUITES="trixie" runs one; UPDATE_DOCS_IMAGES=1 also refreshes the
# README's screenshots in docs/img/.
.PHONY: ui-test
ui-test: dist
	ONEMIN3D_UI_DOCS=$(UPDATE_DOCS_IMAGES) scripts/ui_test.sh $(UI_SUITES)

demo: $(STAMP)
	@mkdir -p $(BLENDER_USER_RESOURCES)
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) .venv-bpy* .venv-typecheck-latest build dist wheels out .mypy_cache .ruff_cache .pytest_cache
