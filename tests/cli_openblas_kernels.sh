#!/usr/bin/env bash
# tests/cli_openblas_kernels.sh: the thread-count determinism tests again under
# every OpenBLAS kernel this processor can run, as CI on another machine would
# run them.
#
# OpenBLAS (DYNAMIC_ARCH) picks its kernels from the processor, or from
# OPENBLAS_CORETYPE: an AVX-512 machine runs the SkylakeX (and, with
# avx512_bf16, Cooperlake) kernels by default and the Haswell (AVX2) ones when
# told, and some machines of this kind set OPENBLAS_CORETYPE=Haswell in the
# environment. pl_gemm's promise (core/gemm.h) is the same bits at 1, 2 and 3
# threads under each kernel; this runs, under each kernel the processor can
# run (and with the variable unset) other than the one the rest of the suite
# ran under:
#   test_gemm, test_cpu_ops, test_cpu_backward          (whole, ASan build)
#   test_train, test_lora with POTLUCK_TEST_THREADS_ONLY=1 (stories260K 10 steps
#   and 3 QLoRA steps with dropout at 1, 2 and 3 threads)
# and checks from test_gemm's note that OpenBLAS really used the kernel asked for.
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
B=build/san/tests
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
kernels=()
has avx2 && has fma && kernels+=(Haswell)
has avx512f && has avx512bw && has avx512dq && has avx512vl && kernels+=(SkylakeX)
has avx512f && has avx512_bf16 && kernels+=(Cooperlake)
# The rest of the suite ran under the environment's setting; run the others:
# OpenBLAS's own choice (unset) when the environment names one, and every
# named kernel but the environment's.
envk=${OPENBLAS_CORETYPE:-}
todo=()
[ -n "$envk" ] && todo+=("")
for k in "${kernels[@]}"; do [ "${k,,}" = "${envk,,}" ] || todo+=("$k"); done
echo "note: OPENBLAS_CORETYPE in the environment: ${envk:-unset}; run here:$(for k in "${todo[@]}"; do printf ' %s' "${k:-unset}"; done)"
for k in "${todo[@]}"; do
  label=${k:-unset}
  for t in test_gemm test_cpu_ops test_cpu_backward test_train test_lora; do
    [ -x "$B/$t" ] || { bad "$B/$t is not built"; continue; }
    env=(env -u OPENBLAS_CORETYPE)
    [ -n "$k" ] && env=(env OPENBLAS_CORETYPE="$k")
    case $t in test_train|test_lora) env+=(POTLUCK_TEST_THREADS_ONLY=1);; esac
    out=$("${env[@]}" "$B/$t" 2>&1); rc=$?
    line=$(grep -E "^== .*: [0-9]+ passed, [0-9]+ failed" <<<"$out" | tail -1)
    if [ $rc -eq 0 ] && [[ "$line" == *" 0 failed" ]]; then ok
    else bad "$t under OPENBLAS_CORETYPE=$label (exit $rc): $line"; grep -E '^FAIL' <<<"$out" | head -5 >&2; fi
    if [ $t = test_gemm ]; then
      core=$(sed -n 's/^note: OpenBLAS kernel: //p' <<<"$out")
      echo "note: OPENBLAS_CORETYPE=$label: OpenBLAS ran its '$core' kernels"
      if [ -n "$k" ]; then
        # OpenBLAS names its kernels in lower or mixed case (haswell, skylakex, cooperlake)
        if [ "${core,,}" = "${k,,}" ]; then ok; else bad "OPENBLAS_CORETYPE=$k: OpenBLAS reports '$core'"; fi
      fi
    fi
  done
done
echo "== cli_openblas_kernels: $pass passed, $fail failed"
[ $fail -eq 0 ]
