/* backend_named.c: choosing a backend by name (--backend). */
#include <stdio.h>
#include <string.h>

#include "backend.h"

/* Defined by trainer/cuda/cuda_backend.cu in the builds that link the CUDA
 * backend (make emu, make gpu); a weak reference elsewhere. */
extern const pl_backend *pl_backend_cuda_open(pl_err *err) __attribute__((weak));
extern size_t pl_cuda_backend_mem_total(void) __attribute__((weak));

const pl_backend *pl_backend_named(const char *name, pl_err *err) {
    if (!name || !*name || !strcmp(name, "cpu")) return pl_backend_cpu();
    if (!strcmp(name, "cuda")) {
        if (!pl_backend_cuda_open) {
            pl_err_set(err, PL_EUNSUPPORTED,
                       "--backend cuda: this potluck was built without the CUDA backend (`make gpu` builds "
                       "build/gpu/potluck for a GPU; `make emu` builds build/emu/potluck, which runs it on the CPU "
                       "emulator); use --backend cpu");
            return NULL;
        }
        return pl_backend_cuda_open(err);
    }
    pl_err_set(err, PL_EINVAL, "--backend %s: unknown backend (cpu, cuda)", name);
    return NULL;
}

/* The process's backend for models loaded from now on (--backend): a name,
 * opened on first use, so a process that forks (the recipe sandbox) before
 * any model is loaded never touches the device. */
static char default_name[16] = "cpu";

int pl_backend_set_default(const char *name, pl_err *err) {
    if (!name || !*name) name = "cpu";
    if (strcmp(name, "cpu") && strcmp(name, "cuda"))
        return pl_err_set(err, PL_EINVAL, "--backend %s: unknown backend (cpu, cuda)", name);
    if (!strcmp(name, "cuda") && !pl_backend_cuda_open)
        return pl_err_set(err, PL_EUNSUPPORTED,
                          "--backend cuda: this potluck was built without the CUDA backend (`make gpu` builds "
                          "build/gpu/potluck for a GPU; `make emu` builds build/emu/potluck, which runs it on the CPU "
                          "emulator); use --backend cpu");
    snprintf(default_name, sizeof default_name, "%s", name);
    return PL_OK;
}

const char *pl_backend_default_name(void) { return default_name; }

const pl_backend *pl_backend_default(pl_err *err) { return pl_backend_named(default_name, err); }

size_t pl_backend_mem_total(const pl_backend *be) {
    if (!be || strcmp(be->name, "cuda") || !pl_cuda_backend_mem_total) return 0;
    return pl_cuda_backend_mem_total();
}
