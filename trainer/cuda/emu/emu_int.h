/* emu_int.h: what the emulator's runtime (emu_runtime.cpp) and scheduler
 * (emu_sched.cpp) share. */
#ifndef PL_EMU_INT_H
#define PL_EMU_INT_H

#include "emu.h"

namespace pl_emu {
/* Records a failed launch (or other asynchronous error): cudaGetLastError and
 * the next synchronization return it; msg goes to stderr unless quiet. */
void set_error(cudaError_t e, const char *msg);
/* Dynamic shared memory a launch of func may request (48 KiB unless raised
 * with cudaFuncSetAttribute). */
size_t max_dynamic_shared(const void *func);
int stream_valid(cudaStream_t s);
uint64_t env_seed();
} /* namespace pl_emu */

#endif
