# aimp: `make up` starts the local platform, `make test` runs every test.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY_PACKAGES := aimp_core aimp_cli aimp_registry aimp_gateway aimp_registry_sidecar \
               aimp_throttle aimp_stats aimp_deploy_control aimp_inference

.PHONY: setup up down status test check fmt clean

setup: ## install uv if missing, then the workspace (locked versions)
	@command -v $(UV) >/dev/null 2>&1 || { echo "installing uv (pip --user)"; python3 -m pip install --quiet --user uv; }
	@$(UV) sync --all-packages --frozen --quiet

up: setup ## start the local stack in the background and deploy the demo model
	@$(UV) run --frozen aimp up

down: ## stop everything `make up` started
	@if [ -x .venv/bin/aimp ]; then .venv/bin/aimp down; else echo "nothing to stop (never set up)"; fi

status:
	@$(UV) run --frozen aimp status

test: setup ## set up and run every test
	@$(UV) run --frozen pytest

check: setup ## ruff, mypy --strict and the layer contracts
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy $(addprefix -p ,$(PY_PACKAGES))
	@$(UV) run --frozen lint-imports

fmt: setup
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .
