/* kernels/cpu/cpu_kernels.h - optimised CPU kernels (AVX-512 / AVX2) with
 * run-time ISA selection. Internal to libloom.
 *
 * The backend picks an ISA once (loom_cpu_isa_select: cpuid, optionally
 * lowered by $LOOM_CPU_ISA), keeps it in its context and asks
 * loom_cpu_kernel_for(node, isa) per node. A NULL answer means "no optimised
 * kernel for this op/dtype/layout": the caller runs the reference kernel.
 * Kernels follow the reference threading contract: called once per ith in
 * [0, nth), each computes its share; errors go to err. Accuracy: f32
 * arithmetic (weights dequantized in registers, activations kept f32), so
 * results match the reference within the parity suite's tolerances. */
#ifndef LOOM_KERNELS_CPU_H
#define LOOM_KERNELS_CPU_H

#include <stdbool.h>
#include <stddef.h>

#include "loom/ir.h"

typedef enum loom_cpu_isa {
    LOOM_CPU_ISA_SCALAR = 0, /* reference kernels only */
    LOOM_CPU_ISA_AVX2 = 1,   /* avx2 + fma + f16c */
    LOOM_CPU_ISA_AVX512 = 2, /* avx512 f/bw/vl + fma + f16c */
} loom_cpu_isa;

typedef loom_status (*loom_cpu_kernel_fn)(const loom_tensor *node, int ith, int nth, char *err,
                                          size_t err_n);

/* Best ISA this CPU runs. */
loom_cpu_isa loom_cpu_isa_detect(void);
/* detect(), lowered to env (avx512|avx2|scalar) when set; an unknown or
 * unsupported request is reported in note (may be NULL) and ignored/clamped. */
loom_cpu_isa loom_cpu_isa_select(const char *env, char *note, size_t note_n);
const char *loom_cpu_isa_name(loom_cpu_isa isa);

/* Optimised kernel for node on isa, or NULL (use the reference). */
loom_cpu_kernel_fn loom_cpu_kernel_for(const loom_tensor *node, loom_cpu_isa isa);

/* Multi-pass kernels: ops whose later part needs all of an earlier one
 * (moe: the down projection needs every routed token's whole hidden row).
 * The backend allocates scratch_bytes (64-byte aligned, shared by all
 * threads, freed by the backend after the node), runs pass 0 on every
 * thread, waits for all of them, then pass 1, and so on. */
typedef loom_status (*loom_cpu_pass_fn)(const loom_tensor *node, int pass, void *scratch, int ith,
                                        int nth, char *err, size_t err_n);
typedef struct loom_cpu_multipass {
    loom_cpu_pass_fn fn;
    int n_passes;
    size_t scratch_bytes;
} loom_cpu_multipass;

/* true and *mp filled when node has a multi-pass kernel on isa (checked
 * before loom_cpu_kernel_for). */
bool loom_cpu_multipass_for(const loom_tensor *node, loom_cpu_isa isa, loom_cpu_multipass *mp);

/* Int8 activations (ADR 0036, 0043): which matmuls (among those
 * loom_ref_act8_applies covers) the cpu backend runs on int8 activations. */
typedef enum loom_cpu_act {
    LOOM_CPU_ACT_F32 = 0,         /* "f32": none */
    LOOM_CPU_ACT_INT8_DECODE = 1, /* "int8-decode" (the default): matmuls of at most
                                     LOOM_CPU_ACT_DECODE_M activation rows; prefill
                                     keeps the f32 GEMM */
    LOOM_CPU_ACT_INT8 = 2,        /* "int8": every M, so a row rounds the same in any
                                     chunk (loom serve's default) */
} loom_cpu_act;
#define LOOM_CPU_ACT_DECODE_M 8
/* env is $LOOM_CPU_ACT: unset or "" -> int8-decode; "int8-decode", "int8",
 * "f32"; anything else is reported in note (may be NULL) and gives the
 * default. */
loom_cpu_act loom_cpu_act8_select(const char *env, char *note, size_t note_n);
/* Whether mode runs node (a matmul the act8 kernel takes) on int8. */
bool loom_cpu_act8_mode_covers(loom_cpu_act mode, const loom_tensor *node);
/* The int8-activation matmul kernel for node on isa, or NULL (node not
 * covered, or isa scalar). AVX-512 runs it with VNNI when the CPU has it,
 * else the AVX2 instantiation. */
loom_cpu_kernel_fn loom_cpu_act8_kernel_for(const loom_tensor *node, loom_cpu_isa isa);

/* Per-ISA tables (kernels/cpu/cpu_avx512.c, cpu_avx2.c); x86-64 only. */
loom_cpu_kernel_fn loom_cpu_kernel_for_avx512(const loom_tensor *node);
loom_cpu_kernel_fn loom_cpu_kernel_for_avx2(const loom_tensor *node);
bool loom_cpu_multipass_for_avx512(const loom_tensor *node, loom_cpu_multipass *mp);
bool loom_cpu_multipass_for_avx2(const loom_tensor *node, loom_cpu_multipass *mp);
loom_cpu_kernel_fn loom_cpu_act8_for_avx512(const loom_tensor *node); /* needs VNNI */
loom_cpu_kernel_fn loom_cpu_act8_for_avx2(const loom_tensor *node);

#endif
