/* kernels/cuda/emu.h - a CPU emulation of the small part of CUDA that loom's
 * kernels and backend use, for checking the kernels' arithmetic without a GPU.
 *
 * Used only by tests/gpu/emu/run_emu_parity.sh (never by the real build):
 * the .cu files are compiled as C++ with -DLOOM_EMU, launches are rewritten to
 * lc_emu_launch, and each block runs as blockDim host threads with real
 * barriers for __syncthreads, per-warp barriers for shuffles/__syncwarp, and
 * static storage for __shared__ (blocks run one after another). The runtime
 * API is malloc/memcpy. Slow, but the same source lines do the math. */
#ifndef LOOM_KERNELS_CUDA_EMU_H
#define LOOM_KERNELS_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "loom/dtype.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3_ {
    unsigned x, y, z;
};
extern thread_local uint3_ threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

struct lc_emu_barrier {
    std::mutex mu;
    std::condition_variable cv;
    unsigned n = 0, count = 0, gen = 0;
    void wait() {
        std::unique_lock<std::mutex> lk(mu);
        unsigned g = gen;
        if (++count == n) {
            count = 0;
            gen++;
            cv.notify_all();
        } else {
            cv.wait(lk, [&] { return gen != g; });
        }
    }
};
struct lc_emu_block {
    lc_emu_barrier bar;
    std::vector<lc_emu_barrier> warp_bar;
    std::vector<float> xbuf;
};
extern thread_local lc_emu_block *lc_emu_cur;

static inline void __syncthreads() {
    lc_emu_cur->bar.wait();
}
static inline void lc_emu_syncwarp() {
    lc_emu_cur->warp_bar[threadIdx.x / 32].wait();
}
/* Exchange through per-warp buffers; all 32 lanes take part (loom's kernels
 * only shuffle with whole warps). Two buffers used in turn need one barrier
 * per shuffle: a lane rewrites a buffer only after the next shuffle's barrier,
 * which every lane reaches after its read of that buffer. */
extern thread_local unsigned lc_emu_shfl_n;
static inline float lc_emu_shfl(float v, int src_lane, bool xor_mode) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    float *buf = &lc_emu_cur->xbuf[(2 * w + (lc_emu_shfl_n++ & 1)) * 32];
    buf[l] = v;
    lc_emu_syncwarp();
    return buf[xor_mode ? (l ^ (unsigned)src_lane) : (unsigned)src_lane % 32];
}
#define LOOM_SHFL_XOR(v, o, w) lc_emu_shfl((v), (o), true)
#define LOOM_SHFL(v, l, w)     lc_emu_shfl((v), (l), false)
#define LOOM_SYNCWARP()        lc_emu_syncwarp()
#define LOOM_HAVE_BLAS         0

/* One host thread per CUDA thread for the whole launch (creating them per
 * block made the emulation mostly clone/munmap); blocks run one after another,
 * separated by a barrier of their own so that a kernel barrier is never
 * satisfied by threads that already left the block. */
template <typename F> void lc_emu_launch(dim3 g, dim3 b, F &&fn) {
    const unsigned nt = b.x * b.y * b.z;
    lc_emu_block blk;
    blk.bar.n = nt;
    blk.warp_bar = std::vector<lc_emu_barrier>((nt + 31) / 32);
    for (auto &wb : blk.warp_bar)
        wb.n = 32;
    blk.xbuf.assign(((nt + 31) / 32) * 64, 0.0f);
    lc_emu_barrier done;
    done.n = nt;
    std::vector<std::thread> th;
    for (unsigned t = 0; t < nt; t++)
        th.emplace_back([&, t] {
            threadIdx = {t, 0, 0};
            blockDim = b;
            gridDim = g;
            lc_emu_cur = &blk;
            for (unsigned bz = 0; bz < g.z; bz++)
                for (unsigned by = 0; by < g.y; by++)
                    for (unsigned bx = 0; bx < g.x; bx++) {
                        blockIdx = {bx, by, bz};
                        fn();
                        done.wait();
                    }
        });
    for (auto &x : th)
        x.join();
}
#define LC_EMU_LAUNCH(kern, g, b, ...) lc_emu_launch(dim3(g), dim3(b), [=] { kern(__VA_ARGS__); })

/* half precision through libloom's own conversions */
struct __half {
    uint16_t x;
};
static inline __half __ushort_as_half(uint16_t h) {
    return __half{h};
}
static inline uint16_t __half_as_ushort(__half h) {
    return h.x;
}
static inline float __half2float(__half h) {
    return loom_f16_to_f32(h.x);
}
static inline __half __float2half_rn(float f) {
    return __half{loom_f32_to_f16(f)};
}
static inline float __uint_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
/* vector types (16/8-byte aligned like CUDA's) and the byte permute */
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
/* Byte k of the result is byte (s >> 4k) & 7 of the 8-byte value {y:x}. */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int k = 0; k < 4; k++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * k)) & 7))) & 0xff) << (8 * k);
    return r;
}
static inline float __fmul_rn(float a, float b) {
    volatile float r = a * b;
    return r;
}
static inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r;
}
static inline float __fsub_rn(float a, float b) {
    volatile float r = a - b;
    return r;
}
static inline int atomicCAS(int *p, int cmp, int val) {
    return __sync_val_compare_and_swap(p, cmp, val);
}
static inline int atomicAdd(int *p, int val) {
    return __sync_fetch_and_add(p, val);
}

/* runtime API */
typedef int cudaError_t;
typedef void *cudaStream_t;
typedef void *cudaEvent_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
enum { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum { cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2 };
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor, warpSize;
    char gcnArchName[256];
};
static inline const char *cudaGetErrorString(cudaError_t e) {
    return e ? "emulated error" : "no error";
}
static inline cudaError_t cudaGetLastError(void) {
    return 0;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return 0;
}
static inline cudaError_t cudaSetDevice(int) {
    return 0;
}
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    strcpy(p->name, "CUDA emulated on the CPU (tests only)");
    p->totalGlobalMem = (size_t)1 << 32;
    p->major = 8;
    p->warpSize = 32;
    return 0;
}
static inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    *f = *t = (size_t)1 << 32;
    return 0;
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, int) {
    *s = (void *)1;
    return 0;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t) {
    return 0;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return 0;
}
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, int) {
    *e = (void *)1;
    return 0;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t) {
    return 0;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) {
    return 0;
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) {
    return 0;
}
template <typename T> cudaError_t cudaMalloc(T **p, size_t n) {
    *p = (T *)calloc(1, n ? n : 1);
    return *p ? 0 : 2;
}
template <typename T> cudaError_t cudaMallocHost(T **p, size_t n) {
    return cudaMalloc(p, n);
}
static inline cudaError_t cudaFree(void *p) {
    free(p);
    return 0;
}
static inline cudaError_t cudaFreeHost(void *p) {
    free(p);
    return 0;
}
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, int) {
    memmove(d, s, n);
    return 0;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, int, cudaStream_t) {
    memmove(d, s, n);
    return 0;
}
#endif
