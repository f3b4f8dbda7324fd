// kernels/vulkan/common.glsl - shared declarations of the loom compute shaders.
//
// Every shader uses the same interface (backends/vulkan/vk_pipeline.c):
// binding 0 the output, 1..3 the sources, 4 the aux buffer (host-written
// tables and the device-side error word), 128 bytes of push constants.
// Buffers are arrays of 32-bit words addressed in BYTES: the host binds the
// tensor's storage region and passes the tensor's byte offset and byte
// strides, so f16/bf16/q8_0/q4_0 data (2-byte values, 34- and 18-byte
// blocks) is read without 8/16-bit storage features.
#extension GL_GOOGLE_include_directive : require

layout(std430, set = 0, binding = 0) buffer Out { uint Y[]; };
layout(std430, set = 0, binding = 1) readonly buffer Src0 { uint A[]; };
layout(std430, set = 0, binding = 2) readonly buffer Src1 { uint B[]; };
layout(std430, set = 0, binding = 3) readonly buffer Src2 { uint C[]; };
layout(std430, set = 0, binding = 4) buffer Aux { uint X[]; };

// loom_dtype values
#define T_F32 0u
#define T_F16 1u
#define T_BF16 2u
#define T_I32 3u
#define T_Q8_0 4u
#define T_Q4_0 5u
// ggml's legacy types (loom/dtype.h): 32 values per block of 20/22/24 bytes
#define T_Q4_1 8u
#define T_Q5_0 9u
#define T_Q5_1 10u
bool is_legacy_q(uint t) { return t >= T_Q4_1 && t <= T_Q5_1; }
uint legacy_bytes(uint t) { return t == T_Q4_1 ? 20u : t == T_Q5_0 ? 22u : 24u; }

float f16_bits_to_f32(uint h) { return unpackHalf2x16(h).x; }
float bf16_bits_to_f32(uint h) { return uintBitsToFloat(h << 16); }

#include "kquant.glsl"

// Loaders for one buffer: u8/u16/u32 at a byte address, and an element of
// dtype t (row-blocked for q8_0/q4_0/q4_1/q5_0/q5_1: `row` is the row's byte
// address and i0 the element index; plain types: address row + i0 * nb0).
// BUF_legacy: element j of the q4_1/q5_0/q5_1 block at byte blk, computed
// as ggml dequantizes it: d * q (+ m), not fused (precise).
#define LOOM_LOADERS(BUF)                                                        \
    uint BUF##_u8(uint a) { return (BUF[a >> 2] >> ((a & 3u) * 8u)) & 0xffu; }   \
    uint BUF##_u16(uint a) { return (BUF[a >> 2] >> ((a & 2u) * 8u)) & 0xffffu; } \
    float BUF##_f32(uint a) { return uintBitsToFloat(BUF[a >> 2]); }             \
    float BUF##_legacy(uint t, uint blk, uint j) {                               \
        float d = f16_bits_to_f32(BUF##_u16(blk));                               \
        uint qs = blk + (t == T_Q4_1 ? 4u : t == T_Q5_0 ? 6u : 8u);              \
        uint b = BUF##_u8(qs + (j & 15u));                                       \
        uint q = j < 16u ? (b & 15u) : (b >> 4);                                 \
        if (t != T_Q4_1) {                                                       \
            uint ha = blk + (t == T_Q5_0 ? 2u : 4u) + (j >> 4) * 2u;             \
            q |= ((BUF##_u16(ha) >> (j & 15u)) & 1u) << 4;                       \
        }                                                                        \
        if (t == T_Q5_0) return float(int(q) - 16) * d;                          \
        precise float v = float(q) * d;                                          \
        precise float r = v + f16_bits_to_f32(BUF##_u16(blk + 2u));              \
        return r;                                                                \
    }                                                                            \
    LOOM_KQ_ELEM(BUF)                                                            \
    float BUF##_elem(uint t, uint row, uint i0, uint nb0) {                      \
        if (t >= T_Q2_K) return BUF##_kq(t, row, i0);                            \
        if (t == T_F32) return uintBitsToFloat(BUF[(row + i0 * nb0) >> 2]);      \
        if (t == T_F16) return f16_bits_to_f32(BUF##_u16(row + i0 * nb0));      \
        if (t == T_BF16) return bf16_bits_to_f32(BUF##_u16(row + i0 * nb0));    \
        if (t == T_I32) return float(int(BUF[(row + i0 * nb0) >> 2]));           \
        if (t == T_Q8_0) {                                                       \
            uint blk = row + (i0 >> 5) * 34u;                                    \
            float d = f16_bits_to_f32(BUF##_u16(blk));                           \
            int q = int(BUF##_u8(blk + 2u + (i0 & 31u)) << 24) >> 24;            \
            return float(q) * d;                                                 \
        }                                                                        \
        if (is_legacy_q(t)) return BUF##_legacy(t, row + (i0 >> 5) * legacy_bytes(t), i0 & 31u); \
        uint blk = row + (i0 >> 5) * 18u;                                        \
        float d = f16_bits_to_f32(BUF##_u16(blk));                               \
        uint j = i0 & 31u;                                                       \
        uint b = BUF##_u8(blk + 2u + (j & 15u));                                 \
        uint nib = j < 16u ? (b & 15u) : (b >> 4);                               \
        return float(int(nib) - 8) * d;                                          \
    }

LOOM_LOADERS(A)
LOOM_LOADERS(B)
LOOM_LOADERS(C)

// Flat invocation index over a 2-D grid of 1-D workgroups (x is capped at
// 65535 groups, the rest goes to y).
// (Shaders declare local_size before including this file.)
uint flat_id() {
    return (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x +
           gl_LocalInvocationID.x;
}
uint flat_group() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// ---- error reports (aux words X[0..15], read by loom_vk_compute) ----
// The first report wins: X[0] is the kind (1 an id or target out of range,
// see get_rows.comp; 2 a set_rows row outside [0, R)), X[1..] its details.
#define LOOM_ERR_BAD_ID 1u
#define LOOM_ERR_BAD_ROW 2u

// set_rows: `row` at source position (t, b) is outside [0, R); tag is the
// node's index in the computed slice, so the host can name it.
void report_bad_row(int bad_row, uint at_t, uint at_b, uint n_rows, uint node_tag) {
    if (atomicCompSwap(X[0], 0u, LOOM_ERR_BAD_ROW) == 0u) {
        X[1] = uint(bad_row);
        X[2] = at_t;
        X[3] = at_b;
        X[4] = n_rows;
        X[5] = node_tag;
    }
}

// ---- nf4 / nf4_dq weights (loom/dtype.h) ----
// Element e (a GLOBAL index into the whole-tensor layout): code nibble at
// byte e/2 (high nibble for even e) of binding 1 (A) from s_off; absmax of
// block e/64 is f32 at am_off of binding 3 (C) (nf4), or dq_code[u8 at
// am_off] * scale2[f32 at s2_off] + offset[f32 at dqo_off] (nf4_dq). The
// host binds only the code bytes and scale sections a dispatch uses (large
// weights are split) and biases the offsets so that global indices land in
// them (uint arithmetic wraps). The two codebooks sit in the aux buffer (X)
// at word LOOM_NF4_CODE_WORD and LOOM_NF4_DQ_CODE_WORD.
#define T_NF4 6u
#define T_NF4_DQ 7u
#define LOOM_NF4_CODE_WORD 16u
#define LOOM_NF4_DQ_CODE_WORD 32u

float nf4_absmax(uint wt, uint blk, uint am_off, uint s2_off, uint dqo_off) {
    if (wt == T_NF4) return C_f32(am_off + 4u * blk);
    uint q = C_u8(am_off + blk);
    float s2 = C_f32(s2_off + 4u * (blk >> 8));
    precise float v = uintBitsToFloat(X[LOOM_NF4_DQ_CODE_WORD + q]) * s2;
    precise float r = v + C_f32(dqo_off);
    return r;
}

float nf4_code(uint s_off, uint e) {
    uint byte = A_u8(s_off + (e >> 1));
    uint c = (e & 1u) != 0u ? (byte & 15u) : (byte >> 4);
    return uintBitsToFloat(X[LOOM_NF4_CODE_WORD + c]);
}

// ---- workgroup reductions (shaders that #define LOOM_WG_REDUCE) ----
// wg_sum / wg_max: every invocation of the workgroup passes one value and
// gets the total. Built twice (backends/vulkan/CMakeLists.txt): with
// LOOM_SUBGROUP (the "<name>_sg" SPIR-V, chosen when the device reports
// subgroup arithmetic in compute), each subgroup reduces with subgroupAdd /
// subgroupMax and the per-subgroup results meet in shared memory; without
// it, a shared-memory tree over WG slots. Both sum in a fixed order, so a
// run is deterministic on a given device. WG must be a power of two.
#ifdef LOOM_WG_REDUCE
#ifdef LOOM_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
shared float wg_red[WG];

float wg_sum(float v) {
#ifdef LOOM_SUBGROUP
    v = subgroupAdd(v);
    if (subgroupElect()) wg_red[gl_SubgroupID] = v;
    barrier();
    float r = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++)
        r += wg_red[i];
    barrier();
    return r;
#else
    uint t = gl_LocalInvocationID.x;
    wg_red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) wg_red[t] += wg_red[t + s];
        barrier();
    }
    float r = wg_red[0];
    barrier();
    return r;
#endif
}

float wg_max(float v) {
#ifdef LOOM_SUBGROUP
    v = subgroupMax(v);
    if (subgroupElect()) wg_red[gl_SubgroupID] = v;
    barrier();
    float r = wg_red[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++)
        r = max(r, wg_red[i]);
    barrier();
    return r;
#else
    uint t = gl_LocalInvocationID.x;
    wg_red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) wg_red[t] = max(wg_red[t], wg_red[t + s]);
        barrier();
    }
    float r = wg_red[0];
    barrier();
    return r;
#endif
}
#endif
