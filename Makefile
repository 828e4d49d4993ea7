# aimp: `make up` starts the local platform, `make test` runs every test.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# Test files run in this many processes (pytest-xdist, one file per process at a time):
# most integration tests wait on real processes and sockets, so two overlap well even
# on a 2-core machine. Each process has its own Redis database, Kafka and registry.
TEST_WORKERS ?= 2
PY_PACKAGES := aimp_core aimp_cli aimp_registry aimp_gateway aimp_registry_sidecar \
               aimp_throttle aimp_stats aimp_deploy_control aimp_inference

.PHONY: setup native native-deps up down status test check fmt

setup: ## install uv if missing, then the workspace (locked versions)
	@command -v $(UV) >/dev/null 2>&1 || { echo "installing uv (pip --user)"; python3 -m pip install --quiet --user uv; }
	@$(UV) sync --all-packages --frozen --quiet

native-deps: ## install the Debian packages the C++ and Java pods build with (as root; else prints the command)
	-@inference/cpp/install-deps.sh
	-@inference/java/install-deps.sh

native: ## build the C++ and Java pods when their toolchains are present; say plainly when not
	@for pod in cpp java; do \
	  out=$$(inference/$$pod/build.sh 2>&1); rc=$$?; \
	  if [ $$rc -eq 0 ]; then echo "$$pod pod: built (inference/$$pod/build)"; \
	  elif [ $$rc -eq 3 ]; then echo "$$pod pod: NOT built, a toolchain is missing:"; echo "$$out" | sed 's/^/    /'; \
	  else echo "$$out"; echo "$$pod pod: build failed (exit $$rc)"; exit $$rc; fi; \
	done

up: setup native ## start the local stack in the background and deploy the demo model
	@$(UV) run --frozen aimp up

down: ## stop everything `make up` started
	@if [ -x .venv/bin/aimp ]; then .venv/bin/aimp down; else echo "nothing to stop (never set up)"; fi

status:
	@$(UV) run --frozen aimp status

test: setup native-deps native ## set up and run every test
	@$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadfile

check: setup ## ruff, mypy --strict and the layer contracts
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy $(addprefix -p ,$(PY_PACKAGES))
	@$(UV) run --frozen lint-imports

fmt: setup
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .
