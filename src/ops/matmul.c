/* Matmul driver: splits output rows over the thread pool (OpenMP) and calls
 * the active instruction set's kernel on each block of rows. Also the kernel
 * path selection (RGEMMA_KERNEL / rg_set_kernel_path) and thread count. */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "ops/ops.h"
#include "util/util.h"

/* The kernel set in use: chosen once (pthread_once) at the first use, from
 * RGEMMA_KERNEL or else the best the CPU runs; rg_set_kernel_path replaces it
 * (atomically; callers do so while no kernel runs). */
static const rg_kernel_set *g_kernels;
static pthread_once_t g_kernels_once = PTHREAD_ONCE_INIT;

/* The kernel sets this build has, ordered from least to most capable, and
 * whether the CPU (and the OS, which libgcc's checks and the kernel's hwcaps
 * include) has every instruction set a kernel set is compiled with: exactly
 * the Makefile's flags for its objects. */
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

static const rg_kernel_set *const all_sets[] = {&rg_kernels_scalar, &rg_kernels_avx2, &rg_kernels_avx512,
                                                 &rg_kernels_amx};

/* AMX-TILE and AMX-INT8 (CPUID leaf 7: EDX bits 24, 25), and the kernel's
 * leave to use the tile registers, asked for once for the whole process
 * (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, Linux 5.16 on). */
static int g_amx;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;
static void amx_check(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(edx & (1u << 24)) || !(edx & (1u << 25))) return;
    g_amx = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}

static int cpu_has(const char *name) {
    if (!strcmp(name, "scalar")) return 1;
    __builtin_cpu_init();
    /* F16C from CPUID leaf 1 (ECX bit 29): not every compiler's
     * __builtin_cpu_supports knows "f16c" (clang 14 does not) */
    unsigned eax, ebx, ecx = 0, edx;
    int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    if (!strcmp(name, "avx2")) return avx2;
    if (!strcmp(name, "avx512"))
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni");
    if (!strcmp(name, "amx")) {
        pthread_once(&g_amx_once, amx_check);
        return cpu_has("avx512") && g_amx;
    }
    return 0;
}

#elif defined(__aarch64__)
#include <sys/auxv.h>
/* the kernel's AT_HWCAP bits (arch/arm64/include/uapi/asm/hwcap.h) */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

static const rg_kernel_set *const all_sets[] = {&rg_kernels_scalar, &rg_kernels_neon, &rg_kernels_neon_dotprod};

/* neon: Advanced SIMD (with its float16 conversions, part of every arm64
 * CPU); neon-dotprod: also the sdot/udot instructions (FEAT_DotProd). */
static int cpu_has(const char *name) {
    if (!strcmp(name, "scalar")) return 1;
    unsigned long hw = getauxval(AT_HWCAP);
    int neon = (hw & HWCAP_ASIMD) != 0;
    if (!strcmp(name, "neon")) return neon;
    if (!strcmp(name, "neon-dotprod")) return neon && (hw & HWCAP_ASIMDDP);
    return 0;
}

#else
static const rg_kernel_set *const all_sets[] = {&rg_kernels_scalar};

static int cpu_has(const char *name) { return !strcmp(name, "scalar"); }
#endif

#define NSETS (sizeof all_sets / sizeof all_sets[0])

/* The best set this CPU supports: the last one listed that it can run. */
static const rg_kernel_set *best_set(void) {
    const rg_kernel_set *best = &rg_kernels_scalar;
    for (size_t i = 0; i < NSETS; i++)
        if (cpu_has(all_sets[i]->name)) best = all_sets[i];
    return best;
}

/* The set a kernel path names ("auto", NULL or "" for the best); -1 with
 * rg_error if there is none or the CPU cannot run it. */
static int find_set(const char *name, const rg_kernel_set **set) {
    if (!name || !*name || !strcmp(name, "auto")) {
        *set = best_set();
        return 0;
    }
    char names[128] = "";
    for (size_t i = 0; i < NSETS; i++) {
        if (!strcmp(all_sets[i]->name, name)) {
            if (!cpu_has(name)) return rg_error("this CPU cannot run the \"%s\" kernels", name);
            *set = all_sets[i];
            return 0;
        }
        snprintf(names + strlen(names), sizeof names - strlen(names), ", %s", all_sets[i]->name);
    }
    return rg_error("unknown kernel path \"%s\" (this build has auto%s)", name, names);
}

static void choose_kernels(void) {
    const rg_kernel_set *set;
    if (find_set(getenv("RGEMMA_KERNEL"), &set)) {
        fprintf(stderr, "rgemma: RGEMMA_KERNEL: %s; using the best available\n", rg_last_error());
        set = best_set();
    }
    __atomic_store_n(&g_kernels, set, __ATOMIC_RELEASE);
}

int rg_set_kernel_path(const char *name) {
    pthread_once(&g_kernels_once, choose_kernels);
    const rg_kernel_set *set;
    if (find_set(name, &set)) return -1;
    __atomic_store_n(&g_kernels, set, __ATOMIC_RELEASE);
    return 0;
}

const rg_kernel_set *rg_active_kernels(void) {
    pthread_once(&g_kernels_once, choose_kernels);
    return __atomic_load_n(&g_kernels, __ATOMIC_ACQUIRE);
}

const char *rg_kernel_path(void) { return rg_active_kernels()->name; }

void rg_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

int rg_get_threads(void) { return omp_get_max_threads(); }

int rg_kernel_sets_built(const rg_kernel_set **sets, int max) {
    int n = 0;
    for (size_t i = 0; i < NSETS && n < max; i++) sets[n++] = all_sets[i];
    return n;
}

int rg_kernel_sets(const rg_kernel_set **sets, int max) {
    int n = 0;
    for (size_t i = 0; i < NSETS; i++)
        if (cpu_has(all_sets[i]->name) && n < max) sets[n++] = all_sets[i];
    return n;
}

/* A thread's scratch buffers, freed when the thread exits (the server's
 * slot threads come and go) through a pthread key's destructor. */
typedef struct {
    void *buf[RG_SCRATCH_SLOTS];
    size_t cap[RG_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch_set *s = p;
    for (int i = 0; i < RG_SCRATCH_SLOTS; i++) free(s->buf[i]);
    free(s);
}

static void scratch_key_init(void) {
    if (pthread_key_create(&g_scratch_key, scratch_free)) {
        fprintf(stderr, "rgemma: pthread_key_create failed\n");
        abort();
    }
}

void *rg_scratch(int slot, size_t bytes) {
    static _Thread_local scratch_set *set;
    if (!set) {
        pthread_once(&g_scratch_once, scratch_key_init);
        set = rg_xcalloc(1, sizeof *set);
        pthread_setspecific(g_scratch_key, set);
    }
    if (bytes > set->cap[slot]) {
        free(set->buf[slot]);
        set->cap[slot] = (bytes + 4095) & ~(size_t)4095;
        set->buf[slot] = rg_aligned_alloc(set->cap[slot]);
    }
    return set->buf[slot];
}

static _Thread_local unsigned long g_call_id;
static unsigned long g_calls;

unsigned long rg_matmul_call_id(void) { return g_call_id; }

/* Work is handed out in multiples of this many rows (the kernels' row tiles). */
#define ROW_ALIGN 16

/* Whether w's packed copy is in set ks's layout: packed by ks, or by a set
 * that packs as ks does (avx512 and amx share their panels). */
static int packed_for(const rg_tensor *w, const rg_kernel_set *ks) {
    const rg_kernel_set *by = w->packed_for;
    return w->packed && ks->packed && (by == ks || by->packed->pack == ks->packed->pack);
}

/* Rows [r0, r1) of one job: from the weights packed for this set when they
 * are and the rows start a panel, else as stored. */
static void run_rows(const rg_kernel_set *ks, const rg_matmul_job *j, int n, size_t r0, size_t r1,
                     unsigned long call) {
    const rg_tensor *w = j->w;
    int k = (int)w->shape[w->ndim - 1];
    size_t first = (size_t)j->row0 + r0;
    g_call_id = call;
    if (packed_for(w, ks) && first % (size_t)ks->packed->rows == 0) {
        size_t panel = ks->packed->bytes(w->dtype, ks->packed->rows, k);
        ks->packed->matmul[w->dtype]((const uint8_t *)w->packed + first / (size_t)ks->packed->rows * panel,
                                     (int)(r1 - r0), k, j->x, j->ldx, n, j->y + r0, j->ldy);
    } else {
        rg_matmul_fn fn = ks->matmul[w->dtype] ? ks->matmul[w->dtype] : rg_kernels_scalar.matmul[w->dtype];
        size_t rb = rg_tensor_row_bytes(w);
        fn((const uint8_t *)w->data + first * rb, rb, (int)(r1 - r0), k, j->x, j->ldx, n, j->y + r0, j->ldy);
    }
    g_call_id = 0;
    if (j->bias)
        for (int t = 0; t < n; t++)
            for (size_t r = r0; r < r1; r++) j->y[(size_t)t * j->ldy + r] += j->bias[r];
}

/* The rows of all jobs are cut in pieces of whole ROW_ALIGN blocks, about 8
 * per thread, handed out as threads ask: a thread slowed down (another
 * process on its core) then does less instead of holding the others at the
 * join. Each piece is contiguous rows, so decode still streams the weights. */
void rg_matmul_jobs(const rg_matmul_job *jobs, int njobs, int n) {
    const rg_kernel_set *ks = rg_active_kernels();
    size_t units = 0; /* blocks of ROW_ALIGN rows, over all jobs */
    for (int i = 0; i < njobs; i++) units += ((size_t)jobs[i].rows + ROW_ALIGN - 1) / ROW_ALIGN;
    size_t per = units / (8 * (size_t)omp_get_max_threads());
    if (per < 1) per = 1;
    long pieces = (long)((units + per - 1) / per);
    unsigned long call = __atomic_add_fetch(&g_calls, 1, __ATOMIC_RELAXED);
    if (call == 0) call = __atomic_add_fetch(&g_calls, 1, __ATOMIC_RELAXED); /* 0 means none */
#pragma omp parallel for schedule(dynamic, 1) if (pieces > 1)
    for (long p = 0; p < pieces; p++) {
        size_t u0 = (size_t)p * per, u1 = u0 + per < units ? u0 + per : units, at = 0;
        for (int i = 0; i < njobs && at < u1; i++) {
            size_t ju = ((size_t)jobs[i].rows + ROW_ALIGN - 1) / ROW_ALIGN;
            size_t b = u0 > at ? u0 - at : 0, e = u1 - at < ju ? u1 - at : ju;
            if (b < e) {
                size_t r1 = e * ROW_ALIGN < (size_t)jobs[i].rows ? e * ROW_ALIGN : (size_t)jobs[i].rows;
                run_rows(ks, &jobs[i], n, b * ROW_ALIGN, r1, call);
            }
            at += ju;
        }
    }
}

void rg_matmul(const rg_tensor *w, int64_t row0, int rows, const float *x, int ldx, int n, float *y, int ldy,
               const float *bias) {
    rg_matmul_job j = {w, row0, rows, x, ldx, y, ldy, bias};
    rg_matmul_jobs(&j, 1, n);
}

size_t rg_packed_bytes(const rg_tensor *w) {
    const rg_pack_set *ps = rg_active_kernels()->packed;
    return ps && w->ndim == 2 ? ps->bytes(w->dtype, (int)w->shape[0], (int)w->shape[1]) : 0;
}

/* The panels are independent: a few per piece, over the threads. */
void rg_pack_weights(rg_tensor *w, void *dst) {
    const rg_kernel_set *ks = rg_active_kernels();
    const rg_pack_set *ps = ks->packed;
    int rows = (int)w->shape[0], k = (int)w->shape[1], per = 16 * ps->rows;
    size_t rb = rg_tensor_row_bytes(w), panel = ps->bytes(w->dtype, ps->rows, k);
#pragma omp parallel for schedule(dynamic, 1)
    for (int r0 = 0; r0 < rows; r0 += per)
        ps->pack(w->dtype, (const uint8_t *)w->data + (size_t)r0 * rb, rb, rows - r0 < per ? rows - r0 : per, k,
                 (uint8_t *)dst + (size_t)(r0 / ps->rows) * panel);
    w->packed = dst;
    w->packed_for = ks;
}

void rg_weight_row(const rg_tensor *w, int64_t row, float *out) {
    if (w->packed)
        ((const rg_kernel_set *)w->packed_for)->packed->row(w->dtype, w->packed, (int)w->shape[1], row, out);
    else
        rg_dequant_row(w, row, out);
}
