#!/usr/bin/env bash
# launch_ranks.sh P PROGRAM [ARGS...] - start P processes of PROGRAM, one per
# GPU, that join one NCCL communicator (unit_tests/dist/nccl_world.hpp).
#
# Uses mpirun as the launcher where there is one (Open MPI, MPICH/Hydra: they
# set the rank variables nccl_world.hpp reads; no MPI library is linked into
# the programs), else starts plain processes with DILATED_RANK /
# DILATED_WORLD_SIZE / DILATED_LOCAL_RANK. DILATED_LAUNCHER=plain forces the
# latter. The NCCL unique id travels through a fresh temporary directory.
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0): on shared machines a
# program using it can take the host's GPUs out of service.
# Exit status: 0 only if every rank exited 0. Each rank is killed after
# DILATED_LAUNCH_TIMEOUT seconds (default 900), so a stuck ring cannot hang
# the caller.
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 P PROGRAM [ARGS...]" >&2
  exit 2
fi
P=$1
shift
limit=${DILATED_LAUNCH_TIMEOUT:-900}
iddir=$(mktemp -d "${TMPDIR:-/tmp}/dilated-nccl-id.XXXXXX")
trap 'rm -rf "$iddir"' EXIT
export DILATED_NCCL_ID_DIR=$iddir NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
  NVSHMEM_DISABLE_NVLS=1

launcher=${DILATED_LAUNCHER:-auto}
if [ "$launcher" != plain ] && command -v mpirun > /dev/null; then
  mpi_version=$(mpirun --version 2>&1)  # (not piped into grep -q: SIGPIPE under pipefail)
  if grep -q "Open MPI\|OpenRTE" <<< "$mpi_version"; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      timeout -k 10 "$limit" mpirun -np "$P" --oversubscribe --bind-to none \
      -x DILATED_NCCL_ID_DIR -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST \
      -x NVSHMEM_DISABLE_NVLS ${LD_LIBRARY_PATH:+-x LD_LIBRARY_PATH} -x PATH "$@"
  else  # MPICH / Hydra pass the whole environment
    timeout -k 10 "$limit" mpirun -np "$P" "$@"
  fi
  exit $?
fi

pids=()
for ((r = 0; r < P; ++r)); do
  DILATED_RANK=$r DILATED_WORLD_SIZE=$P DILATED_LOCAL_RANK=$r \
    timeout -k 10 "$limit" "$@" &
  pids+=($!)
done
# The first rank to fail takes the others down (they would wait for it in
# NCCL until the timeout).
rc=0
for ((n = 0; n < P; ++n)); do
  wait -n
  s=$?
  if [ "$s" -ne 0 ] && [ "$rc" -eq 0 ]; then
    rc=$s
    echo "launch_ranks: a rank exited with status $s; stopping the others" >&2
    kill "${pids[@]}" 2> /dev/null
  fi
done
exit $rc
