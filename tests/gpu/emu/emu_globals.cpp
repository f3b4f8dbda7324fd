// tests/gpu/emu/emu_globals.cpp - thread-local launch state of kernels/cuda/emu.h.
#include "kernels/cuda/emu.h"
thread_local uint3_ threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;
thread_local lc_emu_block *lc_emu_cur;
thread_local unsigned lc_emu_shfl_n;
