// kernels/vulkan/quant.glsl - helpers of the quantizing shaders (quantize,
// quantize_nf4), which must reproduce ir/dtype.c byte for byte. They use
// doubles, so only shaders the backend offers with shaderFloat64 include
// this file (a module that declares Float64 is invalid without it).

// Correctly rounded a / b for finite, normal results: the nearest of the
// approximate quotient and its two neighbours (ties to the even mantissa).
// Vulkan's f32 division is only accurate to 2.5 ulp; the residuals
// a - c * b are exact in double (24-bit by 24-bit products).
float div_rn(float a, float b) {
    float q = a / b;
    if (isinf(q) || isnan(q) || q == 0.0) return q;
    uint qb = floatBitsToUint(q);
    float best = q;
    double be = abs(double(a) - double(q) * double(b));
    for (int s = -1; s <= 1; s += 2) {
        float c = uintBitsToFloat(uint(int(qb) + s));
        double e = abs(double(a) - double(c) * double(b));
        if (e < be || (e == be && (floatBitsToUint(c) & 1u) == 0u)) {
            best = c;
            be = e;
        }
    }
    return best;
}

// Index of the nearest entry to x in the sorted table of len floats at aux
// word base (ties to the lower index; NaN gives 0), exactly as ir/dtype.c's
// nearest_sorted: binary search, then the midpoint compared in double,
// where the sum of two table floats is exact.
uint nearest_code(uint base, uint len, float x) {
    uint lo = 0u, hi = len;
    while (lo < hi) {
        uint mid = (lo + hi) / 2u;
        if (uintBitsToFloat(X[base + mid]) < x)
            lo = mid + 1u;
        else
            hi = mid;
    }
    if (lo == 0u) return 0u;
    if (lo == len) return len - 1u;
    double m = (double(uintBitsToFloat(X[base + lo - 1u])) + double(uintBitsToFloat(X[base + lo]))) *
               0.5lf;
    return double(x) > m ? lo : lo - 1u;
}

// Write n (<= 36) bytes, given little-endian in words w[], at byte address
// addr of the output: words wholly inside the range are stored, the (at
// most two) words shared with neighbouring data are merged with atomics.
void store_bytes(uint addr, uint w[9], uint n) {
    uint first = addr >> 2, last = (addr + n - 1u) >> 2;
    for (uint wi = first; wi <= last; wi++) {
        uint v = 0u, mask = 0u;
        for (uint k = 0u; k < 4u; k++) {
            uint a = wi * 4u + k;
            if (a >= addr && a < addr + n) {
                uint i = a - addr;
                v |= ((w[i >> 2] >> ((i & 3u) * 8u)) & 0xffu) << (k * 8u);
                mask |= 0xffu << (k * 8u);
            }
        }
        if (mask == 0xffffffffu) {
            Y[wi] = v;
        } else {
            atomicAnd(Y[wi], ~mask);
            atomicOr(Y[wi], v);
        }
    }
}
