/* kernels/cuda/vendor.h - the one place that knows whether we build for CUDA or HIP.
 *
 * Every .cu file of kernels/cuda and backends/cuda includes only this header
 * for runtime/BLAS declarations and writes CUDA names. Under LOOM_USE_HIP
 * (set by backends/hip/CMakeLists.txt, which compiles the same .cu files with
 * hipcc) the CUDA names are mapped to HIP. Differences handled here:
 *   - HIP 5.2 (Debian 12) has no __shfl_*_sync: the mask is dropped. Every
 *     shuffle in loom passes an explicit width, so the 64-wide wavefront of
 *     gfx90a only ever reduces over LOOM_WARP lanes (see below).
 *   - No hipBLAS in Debian 12: LOOM_HAVE_BLAS is 0 unless the build found
 *     hipBLAS (LOOM_HIP_HAVE_HIPBLAS), and matmul then uses its own kernels.
 *   - Warp size: kernels are written for LOOM_WARP = 32 lanes. On a 64-wide
 *     wavefront a 32-lane "warp" is half a wavefront; __shfl_xor(v, o, 32)
 *     stays inside each half, so the code is correct on both (half the lanes
 *     of a wave64 are not wasted: a block of 128 threads is 4 logical warps). */
#ifndef LOOM_KERNELS_CUDA_VENDOR_H
#define LOOM_KERNELS_CUDA_VENDOR_H

#define LOOM_WARP 32

#if defined(LOOM_EMU) /* CPU emulation for tests only: see emu.h */
#include "kernels/cuda/emu.h"

#elif defined(LOOM_USE_HIP)
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>

#define cudaError_t               hipError_t
#define cudaSuccess               hipSuccess
#define cudaStream_t              hipStream_t
#define cudaEvent_t               hipEvent_t
#define cudaDeviceProp            hipDeviceProp_t
#define cudaGetDeviceCount        hipGetDeviceCount
#define cudaGetDeviceProperties   hipGetDeviceProperties
#define cudaSetDevice             hipSetDevice
#define cudaGetErrorString        hipGetErrorString
#define cudaGetErrorName          hipGetErrorName
#define cudaGetLastError          hipGetLastError
#define cudaErrorInvalidValue     hipErrorInvalidValue
#define cudaErrorMemoryAllocation hipErrorOutOfMemory
#define cudaMalloc                hipMalloc
#define cudaFree                  hipFree
#define cudaMallocHost(p, n)      hipHostMalloc((p), (n), hipHostMallocDefault)
#define cudaFreeHost              hipHostFree
#define cudaMemcpy                hipMemcpy
#define cudaMemcpyAsync           hipMemcpyAsync
#define cudaMemsetAsync           hipMemsetAsync
#define cudaMemcpyHostToDevice    hipMemcpyHostToDevice
#define cudaMemcpyDeviceToHost    hipMemcpyDeviceToHost
#define cudaMemcpyDeviceToDevice  hipMemcpyDeviceToDevice
#define cudaMemcpyToSymbol        hipMemcpyToSymbol
#define cudaMemGetInfo            hipMemGetInfo
#define cudaStreamCreateWithFlags hipStreamCreateWithFlags
#define cudaStreamNonBlocking     hipStreamNonBlocking
#define cudaStreamDestroy         hipStreamDestroy
#define cudaStreamSynchronize     hipStreamSynchronize
#define cudaEventCreateWithFlags  hipEventCreateWithFlags
#define cudaEventDisableTiming    hipEventDisableTiming
#define cudaEventRecord           hipEventRecord
#define cudaEventSynchronize      hipEventSynchronize
#define cudaEventDestroy          hipEventDestroy
#define cudaRuntimeGetVersion     hipRuntimeGetVersion
#define cudaDriverGetVersion      hipDriverGetVersion

/* HIP 5.2 lacks the *_sync shuffles; ROCm >= 6.2 has them, but the maskless
 * ones exist everywhere and mean the same for converged warps. */
#define LOOM_SHFL_XOR(v, o, w) __shfl_xor((v), (o), (w))
#define LOOM_SHFL(v, l, w)     __shfl((v), (l), (w))
/* Lanes of a wavefront run in lockstep; order the LDS accesses only. */
#define LOOM_SYNCWARP()                                                                            \
    do {                                                                                           \
        __builtin_amdgcn_fence(__ATOMIC_SEQ_CST, "wavefront");                                     \
        __builtin_amdgcn_wave_barrier();                                                           \
    } while (0)

#if defined(LOOM_HIP_HAVE_HIPBLAS)
#include <hipblas/hipblas.h>
#define LOOM_HAVE_BLAS        1
#define cublasHandle_t        hipblasHandle_t
#define cublasStatus_t        hipblasStatus_t
#define CUBLAS_STATUS_SUCCESS HIPBLAS_STATUS_SUCCESS
#define cublasCreate          hipblasCreate
#define cublasDestroy         hipblasDestroy
#define cublasSetStream       hipblasSetStream
#define cublasGemmEx          hipblasGemmEx
#define CUBLAS_OP_N           HIPBLAS_OP_N
#define CUBLAS_OP_T           HIPBLAS_OP_T
#define CUBLAS_GEMM_DEFAULT   HIPBLAS_GEMM_DEFAULT
#define CUDA_R_32F            HIPBLAS_R_32F
#define CUDA_R_16F            HIPBLAS_R_16F
#define CUDA_R_16BF           HIPBLAS_R_16B
#define CUBLAS_COMPUTE_32F    HIPBLAS_R_32F
#else
#define LOOM_HAVE_BLAS 0
#endif

#else /* CUDA */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#define LOOM_HAVE_BLAS         1
#define LOOM_SHFL_XOR(v, o, w) __shfl_xor_sync(0xffffffffu, (v), (o), (w))
#define LOOM_SHFL(v, l, w)     __shfl_sync(0xffffffffu, (v), (l), (w))
#define LOOM_SYNCWARP()        __syncwarp()
#endif

#endif
