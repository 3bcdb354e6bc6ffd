/* hd.h: PL_HD marks an inline function for both the host and the device
 * (__host__ __device__ under nvcc, nothing for C and the emulator's host
 * build), so one source serves the CPU code and the CUDA kernels. */
#ifndef PL_HD_H
#define PL_HD_H

#ifndef PL_HD
#ifdef __CUDACC__
#define PL_HD __host__ __device__
#else
#define PL_HD
#endif
#endif

#endif
