# rgemma build. `make` builds the library, the CLI and the test programs;
# `make test` runs the whole suite; `make asan` runs it under ASan+UBSan.
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  := -std=gnu11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fopenmp \
           -Iinclude -Isrc -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(SAN)
LDLIBS  := -lcjson -lmicrohttpd -lhiredis -lcurl -lm -lpthread

# The SIMD kernel sets are those of the target (CC's) architecture: AVX2 and
# AVX-512 on x86, NEON with and without dot products on arm64, none (scalar
# only) elsewhere. Each set is an object of kernels_simd.c (its float
# kernels, never compiled as itself) and one of its int8 kernels
# (kernels_avx2.c, kernels_avx512.c; kernels_neon.c twice), listed by set;
# on x86 also one of the K-quant kernels (kernels_kquant.c, once per set).
SIMD_ARCH := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
ifneq ($(filter x86_64 i386 i486 i586 i686,$(SIMD_ARCH)),)
SIMD_SETS := avx2 avx512
INT8_OBJ  := $(BUILD)/src/ops/kernels_avx2.o $(BUILD)/src/ops/kernels_avx512.o \
             $(BUILD)/src/ops/kernels_kquant_avx2.o $(BUILD)/src/ops/kernels_kquant_avx512.o
else ifeq ($(SIMD_ARCH),aarch64)
SIMD_SETS := neon neon_dotprod
INT8_OBJ  := $(BUILD)/src/ops/kernels_neon.o $(BUILD)/src/ops/kernels_neon_dotprod.o
endif
SIMD_SRC  := $(addprefix src/ops/kernels_,simd.c avx2.c avx512.c neon.c kquant.c)
# LIB_OMIT: library folders left out of a build (the arm64 test build below)
LIB_SRC   := $(filter-out $(SIMD_SRC) $(LIB_OMIT:%=src/%/%.c),$(sort $(wildcard src/*/*.c)))
TOOL_SRC  := $(sort $(wildcard tools/rgemma/*.c))
TEST_SRC  := $(sort $(wildcard tests/unit/test_*.c))
SIMD_OBJ  := $(SIMD_SETS:%=$(BUILD)/src/ops/kernels_simd_%.o)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o) $(SIMD_OBJ) $(INT8_OBJ)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB       := $(BUILD)/librgemma.a
RGEMMA    := $(BUILD)/rgemma

# The version lives in include/rgemma.h only; the shared library's names come
# from it. A 0.x minor release may break the ABI, so below 1.0 the soname
# carries the minor number too (librgemma.so.0.1), from 1.0 on the major only.
RG_VER = $(shell sed -n 's/^\#define RG_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' include/rgemma.h)
VERSION   := $(call RG_VER,MAJOR).$(call RG_VER,MINOR).$(call RG_VER,PATCH)
SOVERSION := $(if $(filter 0,$(call RG_VER,MAJOR)),0.$(call RG_VER,MINOR),$(call RG_VER,MAJOR))
SONAME    := librgemma.so.$(SOVERSION)
SHLIB     := $(BUILD)/librgemma.so.$(VERSION)
PC        := $(BUILD)/rgemma.pc

all: $(RGEMMA) $(SHLIB) $(PC) $(BUILD)/check-golden $(BUILD)/check-grad $(BUILD)/grad-bench $(TEST_BIN)

# Every library object is position-independent with hidden symbols, so the
# same objects make both librgemma.a and librgemma.so; only what rgemma.h
# marks RG_API is exported from the .so (static linking ignores visibility,
# so the unit tests still reach the internals through the .a).
$(BUILD)/src/%.o: CFLAGS += -fPIC -fvisibility=hidden

# SIMD kernels are compiled for their instruction set only, with the macro that
# selects its mapping in src/ops/simd.h; the library picks a set at run time
# from what the CPU reports (src/ops/matmul.c checks exactly these features).
# Plain NEON is part of every arm64 CPU (the default -march); the dot-product
# instructions (sdot) came with Armv8.2, whose GCC intrinsics want armv8.2-a.
$(BUILD)/src/ops/%_avx2.o:   CFLAGS += -mavx2 -mfma -mf16c -DRG_SIMD_AVX2
$(BUILD)/src/ops/%_avx512.o: CFLAGS += -mavx512f -mavx512bw -mavx512vl -mavx512dq \
                                        -mavx512vnni -mfma -mf16c -DRG_SIMD_AVX512
# The avx512 int8 kernels also hold the "amx" set's tile multiplies (used only
# where matmul.c finds AMX-TILE and AMX-INT8 and the kernel grants them).
$(BUILD)/src/ops/kernels_avx512.o: CFLAGS += -mamx-tile -mamx-int8
$(BUILD)/src/ops/%_neon.o:         CFLAGS += -DRG_SIMD_NEON
$(BUILD)/src/ops/%_neon_dotprod.o: CFLAGS += -march=armv8.2-a+dotprod -DRG_SIMD_NEON -DRG_SIMD_DOTPROD

# The CLI is a program over the public interface: its files see include/
# and their own folder, not the library's internals (src/).
$(BUILD)/tools/%.o: CFLAGS := $(filter-out -Isrc,$(CFLAGS))
$(BUILD)/bench/%.o: CFLAGS := $(filter-out -Isrc,$(CFLAGS))

# SAN_OBJ: the sanitizer flags an object is compiled with (all of SAN, except
# where a rule below says otherwise)
SAN_OBJ = $(SAN)
# Objects depend on the Makefile too: a changed flag (visibility, -m sets)
# must not leave objects built the old way in an existing build folder.
$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_OBJ) -c $< -o $@

$(SIMD_OBJ): $(BUILD)/src/ops/kernels_simd_%.o: src/ops/kernels_simd.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_OBJ) -c $< -o $@

$(BUILD)/src/ops/kernels_kquant_%.o: src/ops/kernels_kquant.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_OBJ) -c $< -o $@

$(BUILD)/src/ops/kernels_neon_dotprod.o: src/ops/kernels_neon.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_OBJ) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# -z defs: an unresolved symbol fails the link here, not in a program later
$(SHLIB): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,-z,defs $(LDFLAGS) -o $@ $^ $(LDLIBS)
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/librgemma.so

# pkg-config file; @PREFIX@ is filled in by `make install`. A sanitized build's
# library needs the sanitizer runtime in the program too, hence $(SAN) in Libs.
$(PC): Makefile include/rgemma.h
	@mkdir -p $(dir $@)
	printf '%s\n' 'prefix=@PREFIX@' 'exec_prefix=$${prefix}' 'libdir=$${prefix}/lib' \
	    'includedir=$${prefix}/include' '' 'Name: rgemma' \
	    'Description: RecurrentGemma (Griffin) inference in C' 'Version: $(VERSION)' \
	    'Cflags: -I$${includedir}' '$(strip Libs: -L$${libdir} -lrgemma $(SAN))' \
	    'Libs.private: -fopenmp $(LDLIBS)' >$@

$(RGEMMA): $(TOOL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/check-golden: $(BUILD)/tests/golden/check_golden.o $(BUILD)/tests/golden/golden_main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# grad-bench (by hand, never in the tests): rg_grad_compute's speed on a
# config against the FMA peak (bench/grad_bench.c)
$(BUILD)/grad-bench: $(BUILD)/bench/grad_bench.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/check-grad: $(BUILD)/tests/golden/check_grad.o $(BUILD)/tests/golden/check_golden.o $(BUILD)/tests/golden/grad_main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/golden/check_golden.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# make install [PREFIX=/usr/local] [DESTDIR=] [BUILD=build]: the header, both
# libraries (with the soname and dev symlinks), the CLI and rgemma.pc.
PREFIX ?= /usr/local
DEST   := $(DESTDIR)$(PREFIX)
install: $(RGEMMA) $(LIB) $(SHLIB) $(PC)
	install -d $(DEST)/bin $(DEST)/include $(DEST)/lib/pkgconfig
	install -m 644 include/rgemma.h $(DEST)/include/rgemma.h
	install -m 644 $(LIB) $(DEST)/lib/librgemma.a
	install -m 755 $(SHLIB) $(DEST)/lib/$(notdir $(SHLIB))
	ln -sf $(notdir $(SHLIB)) $(DEST)/lib/$(SONAME)
	ln -sf $(SONAME) $(DEST)/lib/librgemma.so
	install -m 755 $(RGEMMA) $(DEST)/bin/rgemma
	sed 's|@PREFIX@|$(PREFIX)|' $(PC) >$(DEST)/lib/pkgconfig/rgemma.pc

uninstall:
	rm -f $(DEST)/include/rgemma.h $(DEST)/lib/librgemma.a $(DEST)/lib/$(notdir $(SHLIB)) \
	    $(DEST)/lib/$(SONAME) $(DEST)/lib/librgemma.so $(DEST)/bin/rgemma $(DEST)/lib/pkgconfig/rgemma.pc

# Set-up: Debian packages (idempotent; see README "Dependencies").
deps:
	sh scripts/install-deps.sh

test: all
	sh tests/run.sh $(BUILD)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# libFuzzer harnesses (tests/fuzz): the library built again with clang under
# ASan+UBSan and fuzzer coverage, one binary per parser in build-fuzz/.
# `make fuzz-run` (or tests/fuzz/run.sh SECONDS) runs each for a bounded time.
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz:
	$(MAKE) CC=clang BUILD=build-fuzz OPT="-O1 -g" SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" fuzz-bins

fuzz-bins: $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/%)

# the SIMD kernels parse nothing: built without instrumentation (under ASan
# the AVX-512 file alone takes minutes to compile)
ifeq ($(BUILD),build-fuzz)
$(BUILD)/src/ops/kernels_%.o: SAN_OBJ :=
endif

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(LIB)
	$(CC) $(CFLAGS) $(SAN) -fsanitize=fuzzer -o $@ $< $(LIB) $(LDLIBS)

fuzz-run: fuzz
	sh tests/fuzz/run.sh $(or $(FUZZ_SECONDS),12)

# arm64: the library, the kernel tests and check-golden cross-compiled with
# Debian's gcc-aarch64-linux-gnu into build-arm64/ and run under qemu-user
# (tests/arm64/run.sh: -cpu max with the dot-product instructions, and
# cortex-a53 without). Those programs need cJSON and cmocka only (arm64
# copies from Debian multiarch; `make deps` installs all of it), so the
# library is built without the hub and the server (libcurl, libmicrohttpd).
ARM64_CC ?= aarch64-linux-gnu-gcc
cross-arm64:
	$(MAKE) CC=$(ARM64_CC) BUILD=build-arm64 LIB_OMIT="hub server" LDLIBS="-lcjson -lm -lpthread" \
	    build-arm64/check-golden build-arm64/tests/test_kernels build-arm64/tests/test_gemm \
	    build-arm64/tests/test_kv_window

test-arm64: cross-arm64
	sh tests/arm64/run.sh build-arm64

# make check-golden DIR=<case folder or folder of cases>
check-golden: $(BUILD)/check-golden
	@test -n "$(DIR)" || { echo "usage: make check-golden DIR=<case folder>" >&2; exit 2; }
	$(BUILD)/check-golden $(DIR)

# make check-grad DIR=<case folder or folder of cases>: the loss and every
# parameter's gradient against grad.safetensors / grad.json
check-grad: $(BUILD)/check-grad
	@test -n "$(DIR)" || { echo "usage: make check-grad DIR=<case folder>" >&2; exit 2; }
	$(BUILD)/check-grad $(DIR)

# The demo model (models/brown-demo), trained again from the Brown Corpus:
# about 15-20 minutes on 2 cores (scripts/train-demo.sh).
demo-model: $(RGEMMA)
	RGEMMA=$(RGEMMA) sh scripts/train-demo.sh models/brown-demo

clean:
	rm -rf build build-asan build-fuzz build-arm64

.PHONY: all deps test asan fuzz fuzz-bins fuzz-run check-golden check-grad demo-model clean install uninstall cross-arm64 test-arm64
.SECONDARY:
# the dependency files are only read: an empty rule keeps make from trying to
# remake them through its built-in rules (e.g. kernels_kquant_avx2.d from a
# kernels_kquant_avx2.d.o that the K-quant pattern rule would compile)
$(BUILD)/%.d: ;
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
