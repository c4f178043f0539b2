# rgemma build. `make` builds the library, the CLI and the test programs;
# `make test` runs the whole suite; `make asan` runs it under ASan+UBSan.
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  := -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fopenmp \
           -Iinclude -Isrc -MMD -MP $(SAN) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(SAN)
LDLIBS  := -lcjson -lmicrohttpd -lm -lpthread

LIB_SRC   := $(sort $(wildcard src/*/*.c))
TOOL_SRC  := $(sort $(wildcard tools/rgemma/*.c))
TEST_SRC  := $(sort $(wildcard tests/unit/test_*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB       := $(BUILD)/librgemma.a
RGEMMA    := $(BUILD)/rgemma

all: $(RGEMMA) $(BUILD)/check-golden $(TEST_BIN)

# SIMD kernels are compiled for their instruction set only; the library picks
# one at run time from what the CPU reports (src/ops/dispatch.c).
$(BUILD)/src/ops/%_avx2.o:   CFLAGS += -mavx2 -mfma -mf16c
$(BUILD)/src/ops/%_avx512.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512dq \
                                        -mavx512bf16 -mavx512vnni -mfma -mf16c

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(RGEMMA): $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/check-golden: $(BUILD)/tests/golden/check_golden.o $(BUILD)/tests/golden/golden_main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/golden/check_golden.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Set-up: Debian packages (idempotent; see README "Dependencies").
deps:
	sh scripts/install-deps.sh

test: all
	sh tests/run.sh $(BUILD)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# make check-golden DIR=<case folder or folder of cases>
check-golden: $(BUILD)/check-golden
	@test -n "$(DIR)" || { echo "usage: make check-golden DIR=<case folder>" >&2; exit 2; }
	$(BUILD)/check-golden $(DIR)

clean:
	rm -rf build build-asan

.PHONY: all deps test asan check-golden clean
.SECONDARY:
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
