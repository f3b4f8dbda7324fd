// kernels/vulkan/convert.glsl - f32 -> f16 / bf16 on the bits, exactly as
// ir/dtype.c (round to nearest even, NaN kept quiet with its top payload
// bits). Integer-only, so no 16-bit or bf16 device support is needed and a
// device that flushes denormals still produces f16 subnormals.

uint f32_to_f16_bits(float f) {
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | ((a >> 13) & 0x3ffu);
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if (a >= 0x38800000u) {
        uint h = (a - 0x38000000u) >> 13;
        uint rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h++;
        return sign | h;
    }
    if (a < 0x33000000u) return sign;
    uint m = (a & 0x7fffffu) | 0x800000u;
    uint shift = 126u - (a >> 23);
    uint q = m >> shift;
    uint rem = m & ((1u << shift) - 1u);
    uint hf = 1u << (shift - 1u);
    if (rem > hf || (rem == hf && (q & 1u) != 0u)) q++;
    return sign | q;
}

uint f32_to_bf16_bits(float f) {
    uint x = floatBitsToUint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return ((x >> 16) | 0x40u) & 0xffffu;
    x += 0x7fffu + ((x >> 16) & 1u);
    return x >> 16;
}
