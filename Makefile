# thaw — plain Makefile with named variants (see README.md and docs/architecture.md).
# CONTRIBUTING.md: how the tree is organised, how to test, how to add a kind, an op, a route.
#   make            build/thaw (CPU backend only unless CUDA=1)
#   make CUDA=1     adds the CUDA backend (nvcc + cuBLAS); output in build-cuda/, deps linked statically
#   make test       builds and runs every test this machine can run
#   make asan       ASan + UBSan build in build-asan/, runs the tests
#   make run        installs missing deps, builds, starts `thaw serve` with the demo function
#   make soak       the long hostile suite (THAW_HOSTILE_LONG=1) and a 10-minute soak with hostile clients
#   make bench      benchmarks (bench/); make bench-gpu on a GPU machine
#   make bench-report  charts of the recorded figures (bench/results/*.tsv -> docs/img/*.svg)
#   make fuzz       libFuzzer targets (clang) for a short run each

CUDA ?= 0
SAN ?=
CC ?= cc
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
LIBDIR ?= /usr/lib/x86_64-linux-gnu
PQ_INC ?= /usr/include/postgresql

# CUDA=1 without nvcc: say so and build the CPU-only variant
ifeq ($(CUDA),1)
  ifeq ($(shell command -v $(NVCC) 2>/dev/null),)
    $(warning thaw: nvcc not found at $(NVCC): building without the CUDA backend)
    override CUDA = 0
  endif
endif

ifeq ($(SAN),asan)
  BUILD ?= build-asan
  SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(CUDA),1)
  BUILD ?= build-cuda
else
  BUILD ?= build
endif

WARN = -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(CFLAGS) $(SANFLAGS) -I. -I$(LLHTTP_INC) -I$(PQ_INC) -MMD -MP
LDFLAGS += $(SANFLAGS) -pthread

# Dependencies. The CUDA build links them statically so build-cuda/thaw runs on a machine
# that has only the CUDA driver and libcublas (see docs/operations.md).
DEP_NAMES = uv_a uring zstd xxhash jansson sqlite3 sodium z
ifeq ($(CUDA),1)
  LIBS = $(LIBDIR)/libuv_a.a $(LIBDIR)/liburing.a $(LIBDIR)/libzstd.a $(LIBDIR)/libxxhash.a \
         $(LIBDIR)/libjansson.a $(LIBDIR)/libsqlite3.a $(LIBDIR)/libz.a
  # libsodium (API key hashes): the static archive when installed, else the shared library
  LIBS += $(if $(wildcard $(LIBDIR)/libsodium.a),$(LIBDIR)/libsodium.a,-lsodium)
  # libpq (the PostgreSQL registry): the shared library (its static archive needs libpq's
  # own private libraries)
  LIBS += -lpq
  ALL_CFLAGS += -DTHAW_CUDA=1 -I$(CUDA_HOME)/include
  CU_SRC = $(wildcard kernels/cuda/*.cu pool/*.cu snapshot/*.cu)
  NVFLAGS = -O3 -std=c++17 -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80 \
            -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter,-fPIC -I. -MMD -MP
  LIBS += -L$(CUDA_HOME)/lib64 -lcublas -lcudart_static -ldl -lrt -lstdc++
else
  LIBS = -luv -luring -lzstd -lxxhash -ljansson -lsqlite3 -lsodium -lpq -lz
endif
LIBS += -lm -ldl -lpthread

C_SRC = $(wildcard runtime/*.c runtime/*/*.c snapshot/*.c pool/*.c kernels/*.c kernels/cpu/*.c functions/*.c)
MAIN_SRC = runtime/main.c
LIB_SRC = $(filter-out $(MAIN_SRC),$(C_SRC))
LLHTTP_SRC = $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c $(LLHTTP_DIR)/llhttp.c

LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o) \
          $(patsubst $(LLHTTP_DIR)/%.c,$(BUILD)/obj/llhttp/%.o,$(LLHTTP_SRC))
LIBTHAW = $(BUILD)/libthaw.a
THAW = $(BUILD)/thaw
# thaw-test: the daemon with its test hooks (fault points, runtime/base/rt_fault.h) for the
# end-to-end tests that need them; its rt_fault object comes before the library's
THAW_TEST = $(BUILD)/thaw-test
FAULT_TEST_OBJ = $(BUILD)/obj/runtime/base/rt_fault.test.o

TEST_SRC = $(wildcard tests/*/test_*.c tests/*/*/test_*.c)
TEST_BIN = $(TEST_SRC:%.c=$(BUILD)/%)
TEST_COMMON = tests/t.c tests/e2e/e2e.c tests/e2e/haproxy.c tests/pg.c
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY = $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/replay_%)
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:%.c=$(BUILD)/%)
# Example function kinds built as plugins (functions/examples/fn_NAME.c -> libthaw_NAME.so)
EXAMPLE_SRC = $(wildcard functions/examples/fn_*.c)
EXAMPLE_SO = $(EXAMPLE_SRC:functions/examples/fn_%.c=$(BUILD)/examples/libthaw_%.so)

.PHONY: all deps test check asan soak run bench bench-gpu bench-report fuzz clean tests-build

all: $(THAW)
ifeq ($(CUDA),1)
	@echo "thaw: built $(THAW) with the CUDA backend"
else
	@echo "thaw: built $(THAW) (CPU backend only; make CUDA=1 adds the CUDA backend)"
endif

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c Makefile
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(SANFLAGS) -I$(LLHTTP_INC) -DLLHTTP_STRICT_MODE=1 -w -c $< -o $@

$(LIBTHAW): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -rdynamic: plugin kinds (dlopen) resolve fn_*, kern_* and json_* from the executable
$(THAW): $(BUILD)/obj/$(MAIN_SRC:.c=.o) $(LIBTHAW)
	$(CC) $(LDFLAGS) -rdynamic $^ $(LIBS) -o $@

$(FAULT_TEST_OBJ): runtime/base/rt_fault.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DTHAW_TEST_HOOKS -c $< -o $@

$(THAW_TEST): $(BUILD)/obj/$(MAIN_SRC:.c=.o) $(FAULT_TEST_OBJ) $(LIBTHAW)
	$(CC) $(LDFLAGS) -rdynamic $^ $(LIBS) -o $@

# a plugin needs only functions/fn.h and kernels/kern.h; thaw provides the symbols
$(BUILD)/examples/libthaw_%.so: functions/examples/fn_%.c functions/fn.h kernels/kern.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -I. -fPIC -shared $< -o $@

$(BUILD)/tests/%: tests/%.c $(TEST_COMMON) $(LIBTHAW) tests/t.h tests/e2e/e2e.h tests/e2e/haproxy.h tests/pg.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(TEST_COMMON) $(LIBTHAW) $(LDFLAGS) $(LIBS) -o $@

$(BUILD)/tests/fuzz/replay_%: tests/fuzz/%.c tests/fuzz/replay.c $(LIBTHAW)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< tests/fuzz/replay.c $(LIBTHAW) $(LDFLAGS) $(LIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIBTHAW)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(LIBTHAW) $(LDFLAGS) $(LIBS) -o $@

# test_bench_serve runs the serving benchmark's client and model writer
tests-build: $(THAW) $(THAW_TEST) $(TEST_BIN) $(FUZZ_REPLAY) $(EXAMPLE_SO) $(BUILD)/bench/bench_serve \
             $(BUILD)/bench/snap_genmodel

test: deps
	@$(MAKE) --no-print-directory tests-build
	@BUILD=$(BUILD) tests/run.sh

check: test

asan: deps
	@$(MAKE) --no-print-directory SAN=asan tests-build
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-demo.sh $(THAW)

# SOAK_SECONDS (default 600) and the other SOAK_* settings of bench/soak.sh pass through
soak: deps
	@$(MAKE) --no-print-directory tests-build
	@BUILD=$(BUILD) THAW_HOSTILE_LONG=1 THAW_TEST_FILTER=tests/hostile/ tests/run.sh
	@THAW_BIN=$(BUILD)/thaw THAW_SRC=. SOAK_HOSTILE=1 sh bench/soak.sh

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BIN)
	@BUILD=$(BUILD) bench/run.sh

bench-gpu:
	@$(MAKE) --no-print-directory CUDA=1 all
	@BUILD=build-cuda GPU=1 bench/run.sh

# charts (docs/img/*.svg, embedded in docs/benchmarks.md) from bench/results/*.tsv, which the
# bench scripts append to; gnuplot from scripts/install-deps.sh
bench-report:
	@bench/report.sh docs/img

# libFuzzer builds (clang); each target runs FUZZ_SECONDS over its seed corpus.
FUZZ_SECONDS ?= 30
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" LDFLAGS="-fsanitize=address,undefined" $(LIBTHAW:$(BUILD)/%=build-fuzz/%)
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=c11 -D_GNU_SOURCE -O1 -g -I. -fsanitize=fuzzer,address,undefined $$f build-fuzz/libthaw.a $(LIBS) -o build-fuzz/$$n || exit 1; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  d=tests/fuzz/$${n#fuzz_}.dict; dict=; [ -f $$d ] && dict=-dict=$$d; \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) $$dict build-fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} || exit 1; done

clean:
	rm -rf build build-cuda build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
