/* backends/cpu/loom_backend_cpu.c - the built-in "cpu" backend.
 *
 * Always available, priority 100, supports every op the reference kernels
 * support. Buffers are 64-byte aligned host memory. compute runs each node
 * split across a loom_threadpool (the calling thread is thread 0), node after
 * node, stopping at the first error: with the optimised kernel of
 * kernels/cpu when one applies to the node on the selected ISA, else with the
 * reference kernel (loom_ref_compute).
 *
 * ISA: chosen once at init from cpuid (AVX-512 > AVX2 > scalar), lowered by
 * $LOOM_CPU_ISA=avx512|avx2|scalar (so CI can exercise every path), and kept
 * in the context; "scalar" runs the reference kernels only.
 *
 * Threads: be->n_threads if > 0, else $LOOM_THREADS if > 0, else one per
 * online core; the pool is (re)created lazily when that number changes.
 * Ownership: be->ctx (cpu_ctx and its pool) is created by init and freed by
 * shutdown; each loom_buffer and its memory are freed by buffer_free. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/builtin.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/ref.h"
#include "loom/backend.h"
#include "loom/hostmem.h"
#include "loom/threadpool.h"

#define CPU_ALIGN   64
#define CPU_ERR_MAX 256

typedef struct cpu_ctx {
    loom_threadpool *pool;
    char (*errs)[CPU_ERR_MAX]; /* one message slot per thread */
    int n_errs;
    loom_cpu_isa isa;  /* kernel set, fixed at init */
    loom_cpu_act act8; /* which matmuls get int8 activations (ADR 0036, 0043), fixed at init */
} cpu_ctx;

static int cpu_threads_wanted(const loom_backend *be) {
    if (be->n_threads > 0) return be->n_threads;
    const char *env = getenv("LOOM_THREADS");
    if (env && *env) {
        long n = strtol(env, NULL, 10);
        if (n > 0 && n < 4096) return (int)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Make sure the pool has the wanted size. */
static loom_status cpu_ensure_pool(loom_backend *be) {
    cpu_ctx *c = be->ctx;
    int want = cpu_threads_wanted(be);
    if (c->pool && loom_threadpool_size(c->pool) == want) return LOOM_OK;
    loom_threadpool_free(c->pool);
    c->pool = NULL;
    free(c->errs);
    c->errs = calloc((size_t)want, sizeof *c->errs);
    c->n_errs = c->errs ? want : 0;
    if (!c->errs || loom_threadpool_new(want, &c->pool) != LOOM_OK)
        return loom_backend_fail(be, LOOM_ERR_OOM, "cpu: cannot start %d threads", want);
    return LOOM_OK;
}

static loom_status cpu_init(loom_backend *be, char *why, size_t why_n) {
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_n, "cpu: out of memory");
        return LOOM_ERR_UNAVAILABLE;
    }
    c->isa = loom_cpu_isa_select(getenv("LOOM_CPU_ISA"), NULL, 0);
    char note[128];
    c->act8 = loom_cpu_act8_select(getenv("LOOM_CPU_ACT"), note, sizeof note);
    if (note[0]) fprintf(stderr, "loom: cpu: %s\n", note);
    be->ctx = c;
    be->error[0] = '\0';
    return LOOM_OK; /* the pool starts on first compute: cheap registry init */
}

static void cpu_shutdown(loom_backend *be) {
    cpu_ctx *c = be->ctx;
    if (!c) return;
    loom_threadpool_free(c->pool);
    free(c->errs);
    free(c);
    be->ctx = NULL;
}

/* Copy the value of "model name" from /proc/cpuinfo (Linux x86; other
 * systems fall back to "CPU"). */
static void cpu_model_name(char *out, size_t n) {
    snprintf(out, n, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\n");
        if (len > 0) snprintf(out, n, "%.*s", (int)len, v);
        break;
    }
    fclose(f);
}

static void cpu_device_info(loom_backend *be, loom_device_info *out) {
    memset(out, 0, sizeof *out);
    cpu_model_name(out->name, sizeof out->name);
    snprintf(out->kind, sizeof out->kind, "cpu");
    long page = sysconf(_SC_PAGESIZE);
    long pages = sysconf(_SC_PHYS_PAGES);
    long avail = sysconf(_SC_AVPHYS_PAGES);
    if (page > 0 && pages > 0) out->mem_total = (size_t)page * (size_t)pages;
    if (page > 0 && avail > 0) out->mem_free = (size_t)page * (size_t)avail;
    out->n_threads = cpu_threads_wanted(be);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    static const char *const names[] = {"avx2", "avx512f", "avx512bw", "avx512vnni", "avx512bf16"};
    /* __builtin_cpu_supports needs string literals, hence no loop over names. */
    const int have[] = {
        __builtin_cpu_supports("avx2"),       __builtin_cpu_supports("avx512f"),
        __builtin_cpu_supports("avx512bw"),   __builtin_cpu_supports("avx512vnni"),
        __builtin_cpu_supports("avx512bf16"),
    };
    size_t k = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!have[i]) continue;
        int w =
            snprintf(out->features + k, sizeof out->features - k, "%s%s", k ? " " : "", names[i]);
        if (w > 0 && (size_t)w < sizeof out->features - k) k += (size_t)w;
    }
    const cpu_ctx *c = be->ctx;
    if (c && k < sizeof out->features - 16)
        snprintf(out->features + k, sizeof out->features - k, "%skernels=%s", k ? " " : "",
                 loom_cpu_isa_name(c->isa));
    out->bf16 = have[4] != 0;
    out->int8 = have[3] != 0;
#endif
}

/* A buffer of LOOM_HOST_HUGE or more (the packed weights, a KV cache) starts
 * on a 2 MiB boundary, so that all of it can sit in 2 MiB pages, and is
 * advised for them before its first write (loom/hostmem.h, ADR 0045: decode
 * 1.07-1.13x on SmolLM2). */
static loom_status cpu_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    *out = NULL;
    if (size == 0) return loom_backend_fail(be, LOOM_ERR_INVALID_ARG, "cpu: zero-size buffer");
    const size_t align = size >= LOOM_HOST_HUGE ? LOOM_HOST_HUGE : CPU_ALIGN;
    if (size > SIZE_MAX - align)
        return loom_backend_fail(be, LOOM_ERR_OOM, "cpu: cannot allocate %zu bytes", size);
    const size_t bytes = (size + align - 1) / align * align; /* aligned_alloc wants a multiple */
    loom_buffer *b = calloc(1, sizeof *b);
    void *mem = b ? aligned_alloc(align, bytes) : NULL;
    if (!mem) {
        free(b);
        return loom_backend_fail(be, LOOM_ERR_OOM, "cpu: cannot allocate %zu bytes", size);
    }
    loom_host_advise_huge(mem, bytes);
    b->backend = be;
    b->size = size;
    b->host = mem;
    *out = b;
    return LOOM_OK;
}

static void cpu_buffer_free(loom_buffer *b) {
    if (!b) return;
    free(b->host);
    free(b);
}

static loom_status cpu_check_range(loom_buffer *b, size_t off, const void *p, size_t n,
                                   const char *what) {
    if (!p && n)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG, "cpu: %s with NULL data", what);
    if (off > b->size || n > b->size - off)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG,
                                 "cpu: %s of %zu bytes at offset %zu exceeds buffer of %zu bytes",
                                 what, n, off, b->size);
    return LOOM_OK;
}

static loom_status cpu_buffer_upload(loom_buffer *b, size_t off, const void *src, size_t n) {
    LOOM_TRY(cpu_check_range(b, off, src, n, "upload"));
    if (n) memcpy((char *)b->host + off, src, n);
    return LOOM_OK;
}

static loom_status cpu_buffer_download(loom_buffer *b, size_t off, void *dst, size_t n) {
    LOOM_TRY(cpu_check_range(b, off, dst, n, "download"));
    if (n) memcpy(dst, (const char *)b->host + off, n);
    return LOOM_OK;
}

static bool cpu_supports(loom_backend *be, const loom_tensor *node) {
    (void)be;
    return loom_ref_supports(node);
}

static bool has_host_data(const loom_tensor *t) {
    if (t->data) return true;
    return loom_op_is_view(t->op) && t->view_src && t->view_src->data;
}

typedef struct cpu_task {
    const loom_tensor *node;
    loom_cpu_kernel_fn fn; /* optimised kernel, NULL = reference */
    cpu_ctx *c;
    loom_status *status;      /* one per thread */
    loom_cpu_pass_fn pass_fn; /* multi-pass kernel (fn unused), NULL = none */
    int pass;
    void *scratch;
} cpu_task;

static void cpu_task_run(void *arg, int ith, int nth) {
    cpu_task *t = arg;
    t->c->errs[ith][0] = '\0';
    if (t->pass_fn)
        t->status[ith] =
            t->pass_fn(t->node, t->pass, t->scratch, ith, nth, t->c->errs[ith], CPU_ERR_MAX);
    else
        t->status[ith] = t->fn ? t->fn(t->node, ith, nth, t->c->errs[ith], CPU_ERR_MAX)
                               : loom_ref_compute(t->node, ith, nth, t->c->errs[ith], CPU_ERR_MAX);
}

/* Run one task on every thread; the first failing thread's status. */
static int cpu_run_task(cpu_ctx *c, cpu_task *task, int nth) {
    if (nth == 1)
        cpu_task_run(task, 0, 1);
    else
        loom_threadpool_run(c->pool, cpu_task_run, task);
    for (int t = 0; t < nth; t++)
        if (task->status[t] != LOOM_OK) return t;
    return -1;
}

/* The kernel cpu_compute runs for node on isa: a multi-pass kernel (true, *mp
 * filled), else a one-pass kernel in *fn (NULL: the reference kernel).
 * cpu_kernel_info reports from the same choice. */
static bool cpu_pick(const cpu_ctx *c, const loom_tensor *node, loom_cpu_multipass *mp,
                     loom_cpu_kernel_fn *fn, bool *act8) {
    *fn = NULL;
    *act8 = false;
    if (loom_cpu_multipass_for(node, c->isa, mp)) return true;
    if (c->act8 != LOOM_CPU_ACT_F32 && (*fn = loom_cpu_act8_kernel_for(node, c->isa)) != NULL &&
        loom_cpu_act8_mode_covers(c->act8, node)) {
        *act8 = true;
        return false;
    }
    *fn = loom_cpu_kernel_for(node, c->isa);
    return false;
}

static loom_status cpu_compute(loom_backend *be, loom_tensor *const *nodes, int n_nodes) {
    LOOM_TRY(cpu_ensure_pool(be));
    cpu_ctx *c = be->ctx;
    int nth = loom_threadpool_size(c->pool);
    loom_status status_buf[64];
    loom_status *status = nth <= 64 ? status_buf : malloc((size_t)nth * sizeof *status);
    if (!status) return loom_backend_fail(be, LOOM_ERR_OOM, "cpu: out of memory");
    loom_status s = LOOM_OK;
    for (int i = 0; i < n_nodes && s == LOOM_OK; i++) {
        const loom_tensor *node = nodes[i];
        const char *op = loom_op_name(node->op);
        /* The reference kernels dereference data blindly; catch an unallocated
         * tensor here instead of crashing. */
        const loom_tensor *missing = has_host_data(node) ? NULL : node;
        for (int k = 0; k < LOOM_MAX_SRC && !missing; k++)
            if (node->src[k] && !has_host_data(node->src[k])) missing = node->src[k];
        if (missing) {
            s = loom_backend_fail(be, LOOM_ERR_INVALID_ARG,
                                  "op %s node '%s': tensor '%s' has no host memory", op, node->name,
                                  missing->name);
            break;
        }
        cpu_task task = {node, NULL, c, status, NULL, 0, NULL};
        loom_cpu_multipass mp;
        loom_cpu_kernel_fn fn;
        int bad = -1;
        bool act8;
        if (cpu_pick(c, node, &mp, &fn, &act8)) {
            /* Passes are separated by the pool's join: pass p+1 sees all of p. */
            task.pass_fn = mp.fn;
            task.scratch = aligned_alloc(64, (mp.scratch_bytes + 63) / 64 * 64 + 64);
            if (!task.scratch) {
                s = loom_backend_fail(be, LOOM_ERR_OOM,
                                      "op %s node '%s': out of memory (%zu bytes)", op, node->name,
                                      mp.scratch_bytes);
                break;
            }
            for (task.pass = 0; task.pass < mp.n_passes && bad < 0; task.pass++)
                bad = cpu_run_task(c, &task, nth);
            free(task.scratch);
        } else {
            task.fn = fn;
            bad = cpu_run_task(c, &task, nth);
        }
        if (bad >= 0)
            s = loom_backend_fail(be, status[bad], "op %s node '%s': %s", op, node->name,
                                  c->errs[bad][0] ? c->errs[bad] : loom_status_str(status[bad]));
    }
    if (status != status_buf) free(status);
    return s;
}

static loom_status cpu_synchronize(loom_backend *be) {
    (void)be;
    return LOOM_OK; /* compute is synchronous */
}

/* ---- kernel coverage (loom_backend_iface.kernel_info / kernel_claims) ---- */

static bool cpu_kernel_info(loom_backend *be, const loom_tensor *node, char *name, size_t name_n) {
    const cpu_ctx *c = be->ctx;
    const loom_cpu_isa isa = c ? c->isa : LOOM_CPU_ISA_SCALAR;
    const char *isa_name = loom_cpu_isa_name(isa);
    if (!node || !c) {
        if (name && name_n) snprintf(name, name_n, "%s", isa_name);
        return isa != LOOM_CPU_ISA_SCALAR;
    }
    loom_cpu_multipass mp;
    loom_cpu_kernel_fn fn;
    bool act8;
    const bool opt = cpu_pick(c, node, &mp, &fn, &act8) || fn != NULL;
    if (name && name_n) {
        /* "act8" names the int8-activation kernel: the parity suite compares
         * such a node with loom_ref_compute_act8. */
        if (opt)
            snprintf(name, name_n, "%s %s%s", isa_name, loom_op_name(node->op),
                     act8 ? " act8" : "");
        else
            snprintf(name, name_n, "ref");
    }
    return opt;
}

/* What kernels/cpu's dispatch (LC_ENTRY / LC_MP_ENTRY in cpu_impl.h) has an
 * optimised kernel for, the same on AVX2 and AVX-512; the scalar ISA has
 * none. Kept here rather than in kernels/cpu so the backend owns its claim;
 * the parity suite holds it to the dispatch both ways (a claim that never
 * ran optimised fails, and so does an optimised kernel that is not claimed). */
static const loom_kernel_claim k_cpu_claims[] = {
    {LOOM_OP_MATMUL, LOOM_F32},     {LOOM_OP_MATMUL, LOOM_F16},   {LOOM_OP_MATMUL, LOOM_BF16},
    {LOOM_OP_MATMUL, LOOM_Q8_0},    {LOOM_OP_MATMUL, LOOM_Q4_0},  {LOOM_OP_MATMUL, LOOM_NF4},
    {LOOM_OP_MATMUL, LOOM_NF4_DQ},  {LOOM_OP_MOE, LOOM_F32},      {LOOM_OP_MOE, LOOM_F16},
    {LOOM_OP_MOE, LOOM_BF16},       {LOOM_OP_MOE, LOOM_Q8_0},     {LOOM_OP_MOE, LOOM_Q4_0},
    {LOOM_OP_MOE, LOOM_NF4},        {LOOM_OP_MOE, LOOM_NF4_DQ},   {LOOM_OP_FLASH_ATTN, LOOM_F32},
    {LOOM_OP_FLASH_ATTN, LOOM_F16}, {LOOM_OP_RMS_NORM, LOOM_F32}, {LOOM_OP_SOFTMAX, LOOM_F32},
    {LOOM_OP_SILU, LOOM_F32},       {LOOM_OP_SWIGLU, LOOM_F32},   {LOOM_OP_ADD, LOOM_F32},
    {LOOM_OP_MUL, LOOM_F32},        {LOOM_OP_ROPE, LOOM_F32},     {LOOM_OP_GELU, LOOM_F32},
    {LOOM_OP_MATMUL, LOOM_Q4_1},    {LOOM_OP_MATMUL, LOOM_Q5_0},  {LOOM_OP_MATMUL, LOOM_Q5_1},
    {LOOM_OP_MOE, LOOM_Q4_1},       {LOOM_OP_FLASH_ATTN_BACK, LOOM_F32},
    {LOOM_OP_FLASH_ATTN_BACK, LOOM_F16},
    {LOOM_OP_MOE, LOOM_Q5_0},       {LOOM_OP_MOE, LOOM_Q5_1},
    {LOOM_OP_CPY, LOOM_F32},        {LOOM_OP_CPY, LOOM_F16},      {LOOM_OP_CPY, LOOM_BF16},
};

/* The k-quants' matmul/moe (kernels/cpu/ops/kquant.inc.h, ADR 0024). */
static const loom_kernel_claim k_cpu_kquant_claims[] = {
    {LOOM_OP_MATMUL, LOOM_Q2_K}, {LOOM_OP_MATMUL, LOOM_Q3_K}, {LOOM_OP_MATMUL, LOOM_Q4_K},
    {LOOM_OP_MATMUL, LOOM_Q5_K}, {LOOM_OP_MATMUL, LOOM_Q6_K}, {LOOM_OP_MOE, LOOM_Q2_K},
    {LOOM_OP_MOE, LOOM_Q3_K},    {LOOM_OP_MOE, LOOM_Q4_K},    {LOOM_OP_MOE, LOOM_Q5_K},
    {LOOM_OP_MOE, LOOM_Q6_K},
};

static int cpu_kernel_claims(loom_backend *be, loom_kernel_claim *out, int max) {
    const cpu_ctx *c = be->ctx;
    if (!c || c->isa == LOOM_CPU_ISA_SCALAR) return 0;
    const int n = (int)(sizeof k_cpu_claims / sizeof k_cpu_claims[0]);
    const int nk = (int)(sizeof k_cpu_kquant_claims / sizeof k_cpu_kquant_claims[0]);
    for (int i = 0; i < n && i < max; i++)
        out[i] = k_cpu_claims[i];
    for (int i = 0; i < nk && n + i < max; i++)
        out[n + i] = k_cpu_kquant_claims[i];
    return n + nk;
}

static const loom_backend_iface k_cpu_iface = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "cpu",
    .priority = 100,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .device_info = cpu_device_info,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .buffer_upload = cpu_buffer_upload,
    .buffer_download = cpu_buffer_download,
    .supports = cpu_supports,
    .compute = cpu_compute,
    .synchronize = cpu_synchronize,
    .kernel_info = cpu_kernel_info,
    .kernel_claims = cpu_kernel_claims,
};

const loom_backend_iface *loom_backend_cpu_iface(void) {
    return &k_cpu_iface;
}
