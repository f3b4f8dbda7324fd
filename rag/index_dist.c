/* rag/index_dist.c - scalar distance kernels (the reference the SIMD ones
 * are tested against) and the choice of kernels for this CPU. */
#include <string.h>

#include "loom/dtype.h"
#include "rag/index_dist.h"

static float nip_f32(const float *q, const void *xv, float s, int d) {
    const float *x = xv;
    double acc = 0;
    for (int i = 0; i < d; i++)
        acc += (double)q[i] * x[i];
    (void)s;
    return (float)-acc;
}
static float l2_f32(const float *q, const void *xv, float s, int d) {
    const float *x = xv;
    double acc = 0;
    for (int i = 0; i < d; i++) {
        double t = (double)q[i] - x[i];
        acc += t * t;
    }
    (void)s;
    return (float)acc;
}
static float nip_f16(const float *q, const void *xv, float s, int d) {
    const uint16_t *x = xv;
    double acc = 0;
    for (int i = 0; i < d; i++)
        acc += (double)q[i] * loom_f16_to_f32(x[i]);
    (void)s;
    return (float)-acc;
}
static float l2_f16(const float *q, const void *xv, float s, int d) {
    const uint16_t *x = xv;
    double acc = 0;
    for (int i = 0; i < d; i++) {
        double t = (double)q[i] - loom_f16_to_f32(x[i]);
        acc += t * t;
    }
    (void)s;
    return (float)acc;
}
static float nip_i8(const float *q, const void *xv, float s, int d) {
    const int8_t *x = xv;
    double acc = 0;
    for (int i = 0; i < d; i++)
        acc += (double)q[i] * x[i];
    return (float)(-acc * s);
}
static float l2_i8(const float *q, const void *xv, float s, int d) {
    const int8_t *x = xv;
    double acc = 0;
    for (int i = 0; i < d; i++) {
        double t = (double)q[i] - (double)s * x[i];
        acc += t * t;
    }
    return (float)acc;
}

void loom_rag_kernels_scalar(loom_rag_kernels *k) {
    k->isa = "scalar";
    k->dist[0][0] = nip_f32;
    k->dist[0][1] = l2_f32;
    k->dist[1][0] = nip_f16;
    k->dist[1][1] = l2_f16;
    k->dist[2][0] = nip_i8;
    k->dist[2][1] = l2_i8;
    k->dist8[0] = k->dist8[1] = NULL;
}

static loom_rag_isa best_isa(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return LOOM_RAG_ISA_AVX512;
    /* Every AVX2 CPU has F16C (Haswell, Piledriver on); clang's probe has
     * no name for it, so it is not asked (kernels/cpu does the same). */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LOOM_RAG_ISA_AVX2;
#endif
    return LOOM_RAG_ISA_SCALAR;
}

int loom_rag_kernels_for(loom_rag_isa isa, loom_rag_kernels *out) {
    if (isa > best_isa()) return 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (isa == LOOM_RAG_ISA_AVX512) {
        loom_rag_kernels_avx512(out);
        return 1;
    }
    if (isa == LOOM_RAG_ISA_AVX2) {
        loom_rag_kernels_avx2(out);
        return 1;
    }
#endif
    loom_rag_kernels_scalar(out);
    return 1;
}

void loom_rag_kernels_select(const char *env, loom_rag_kernels *out) {
    loom_rag_isa want = best_isa();
    /* The same names the cpu backend reads (kernels/cpu/cpu_dispatch.c); a
     * cap above what the CPU has is ignored, never run. */
    if (env && !strcmp(env, "avx2") && want > LOOM_RAG_ISA_AVX2) want = LOOM_RAG_ISA_AVX2;
    if (env && (!strcmp(env, "scalar") || !strcmp(env, "ref"))) want = LOOM_RAG_ISA_SCALAR;
    loom_rag_kernels_for(want, out);
}
