#!/usr/bin/env bash
# tests/cli_mpi_nccl.sh: the CUDA backend's NCCL path (trainer/cuda/nccl_dist.cu)
# on the emulator, whose NCCL is trainer/cuda/emu/emu_nccl.cpp over MPI:
# tests/gpu/nccl_check.c built against it (build/opt/tests/nccl_check_emu)
# under mpirun, its bits against core/dist.c's MPI collectives:
#  - the reduce-scatter in one exchange and in 8 pieces queued last to first
#    (one piece empty, others across the shards' edges), and the all-gather:
#    the same bits as MPI's, at 2 ranks with equal shards (1000 floats: the
#    in-place ncclAllGather) and unequal ones (1001: one ncclBroadcast per
#    shard), at 3 ranks (1000), and with more ranks than floats (3 ranks, 1
#    float: empty shards);
#  - a reduce-scatter in pieces with a piece never queued fails at
#    take_error, naming the piece (checked inside nccl_check);
#  - two ranks on one device (PL_EMU_PCI_BUS_ID the same for both, as two
#    processes on one GPU): NCCL is not opened, rank 0 says so, and
#    nccl_check exits 3 with its message.
# potluck train on this path (NCCL vs MPI bits, the overlap) is in
# tests/cli_mpi_train.sh. Without mpirun or MPI the test says so and counts
# nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
export OMP_NUM_THREADS=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
CHK=${POTLUCK_NCCL_CHECK_EMU:-build/opt/tests/nccl_check_emu}
if ! command -v mpirun >/dev/null; then
  echo "note: mpirun not found (apt-get install openmpi-bin libopenmpi-dev; make deps does): nothing tested"
  check_summary cli_mpi_nccl; exit 0
fi
if [ ! -x "$CHK" ]; then
  fail "$CHK not built (make build-opt builds it when MPI is there)"
  check_summary cli_mpi_nccl; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
MPI=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS)

for c in "2 1000" "2 1001" "3 1000" "3 1"; do
  set -- $c
  if "${MPI[@]}" -np "$1" "$CHK" "$2" 2 >"$tmp/out" 2>"$tmp/err" \
     && grep -q "^nccl_check: $1 ranks on .*, $2 floats: bits equal to MPI's (reduce-scatter, in one and in pieces, and all-gather)" "$tmp/out"
  then ok; else fail "nccl_check at $1 ranks, $2 floats: $(grep -h nccl_check "$tmp/out" "$tmp/err" | head -4)"; fi
done
grep -h "reduce-scatter + all-gather" "$tmp/out" | sed 's/^/note: emulated, 3 ranks, 1 float: /'

# two ranks on one device: no NCCL, and each rank's stderr says why
PL_EMU_PCI_BUS_ID=0000:3b:00.0 "${MPI[@]}" -np 2 -x PL_EMU_PCI_BUS_ID "$CHK" 100 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc != 0 ] && grep -q "NCCL needs a device per rank (ranks 0 and 1 are both on .*/0000:3b:00.0); the gradients go through MPI instead" "$tmp/err" \
   && grep -q "nccl_check: NCCL not usable here (ranks share a device)" "$tmp/err"; then ok
else fail "two ranks on one device: rc=$rc $(grep -h -i nccl "$tmp/err" | head -3)"; fi
check_summary cli_mpi_nccl
