/* kernels/cpu/cpu_dispatch.c - ISA detection and per-node kernel choice. */
#include <stdio.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

loom_cpu_isa loom_cpu_isa_detect(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return LOOM_CPU_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LOOM_CPU_ISA_AVX2;
#endif
    return LOOM_CPU_ISA_SCALAR;
}

const char *loom_cpu_isa_name(loom_cpu_isa isa) {
    switch (isa) {
    case LOOM_CPU_ISA_AVX512:
        return "avx512";
    case LOOM_CPU_ISA_AVX2:
        return "avx2";
    default:
        return "scalar";
    }
}

loom_cpu_isa loom_cpu_isa_select(const char *env, char *note, size_t note_n) {
    const loom_cpu_isa best = loom_cpu_isa_detect();
    if (note && note_n) note[0] = '\0';
    if (!env || !*env) return best;
    loom_cpu_isa want;
    if (!strcmp(env, "avx512"))
        want = LOOM_CPU_ISA_AVX512;
    else if (!strcmp(env, "avx2"))
        want = LOOM_CPU_ISA_AVX2;
    else if (!strcmp(env, "scalar") || !strcmp(env, "ref"))
        want = LOOM_CPU_ISA_SCALAR;
    else {
        if (note && note_n)
            snprintf(note, note_n, "LOOM_CPU_ISA=%s unknown (avx512|avx2|scalar); using %s", env,
                     loom_cpu_isa_name(best));
        return best;
    }
    if (want > best) {
        /* Never run instructions the CPU lacks. */
        if (note && note_n)
            snprintf(note, note_n, "LOOM_CPU_ISA=%s not supported by this CPU; using %s", env,
                     loom_cpu_isa_name(best));
        return best;
    }
    return want;
}

loom_cpu_kernel_fn loom_cpu_kernel_for(const loom_tensor *node, loom_cpu_isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (isa == LOOM_CPU_ISA_AVX512) return loom_cpu_kernel_for_avx512(node);
    if (isa == LOOM_CPU_ISA_AVX2) return loom_cpu_kernel_for_avx2(node);
#else
    (void)node;
    (void)isa;
#endif
    return NULL;
}

bool loom_cpu_multipass_for(const loom_tensor *node, loom_cpu_isa isa, loom_cpu_multipass *mp) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (isa == LOOM_CPU_ISA_AVX512) return loom_cpu_multipass_for_avx512(node, mp);
    if (isa == LOOM_CPU_ISA_AVX2) return loom_cpu_multipass_for_avx2(node, mp);
#else
    (void)node;
    (void)isa;
    (void)mp;
#endif
    return false;
}

loom_cpu_act loom_cpu_act8_select(const char *env, char *note, size_t note_n) {
    if (note && note_n) note[0] = '\0';
    /* int8 decode is the default again since the output head keeps f32
     * activations (LOOM_FLAG_F32_ACT, ADR 0036 addendum 3); prefill stays
     * f32 by default (ADR 0043: int8 prefill tips the README's answer) */
    if (!env || !*env || !strcmp(env, "int8-decode")) return LOOM_CPU_ACT_INT8_DECODE;
    if (!strcmp(env, "int8")) return LOOM_CPU_ACT_INT8;
    if (!strcmp(env, "f32")) return LOOM_CPU_ACT_F32;
    if (note && note_n)
        snprintf(note, note_n, "LOOM_CPU_ACT=%s unknown (int8-decode|int8|f32); using int8-decode",
                 env);
    return LOOM_CPU_ACT_INT8_DECODE;
}

bool loom_cpu_act8_mode_covers(loom_cpu_act mode, const loom_tensor *node) {
    if (mode == LOOM_CPU_ACT_INT8) return true;
    return mode == LOOM_CPU_ACT_INT8_DECODE && node && node->src[1] &&
           node->src[1]->ne[1] <= LOOM_CPU_ACT_DECODE_M;
}

loom_cpu_kernel_fn loom_cpu_act8_kernel_for(const loom_tensor *node, loom_cpu_isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (isa == LOOM_CPU_ISA_AVX512 && __builtin_cpu_supports("avx512vnni"))
        return loom_cpu_act8_for_avx512(node);
    if (isa >= LOOM_CPU_ISA_AVX2) return loom_cpu_act8_for_avx2(node);
#else
    (void)node;
    (void)isa;
#endif
    return NULL;
}
