// One process per GPU, joined into one NCCL communicator - the set-up a user's
// program does before handing the ncclComm_t to dilated::dist (the library
// never creates communicators). Used by the multi-GPU tests and benchmarks.
//
// Rank and size come from whichever launcher started the process: mpirun
// (Open MPI's OMPI_COMM_WORLD_*), a PMI launcher (PMI_RANK / PMI_SIZE), Slurm
// (SLURM_PROCID / SLURM_NTASKS) or perf_tests/launch_ranks.sh (DILATED_RANK /
// DILATED_WORLD_SIZE). No MPI library is linked: the launcher only starts the
// processes, so a binary built on one machine runs under another machine's
// mpirun. Rank 0 publishes the NCCL unique id as a file in
// $DILATED_NCCL_ID_DIR (written to a temporary name, then renamed, so readers
// never see half an id); the others poll for it.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <unistd.h>

namespace dtest {

struct LaunchInfo {
  int rank = 0, size = 1, local_rank = 0;
};

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// The first launcher whose variables are set wins; none: one rank.
inline LaunchInfo launch_info() {
  static const char* const kRank[][3] = {
      {"DILATED_RANK", "DILATED_WORLD_SIZE", "DILATED_LOCAL_RANK"},
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
      {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"}};
  LaunchInfo info;
  for (const auto& names : kRank) {
    if (!std::getenv(names[0])) continue;
    info.rank = env_int(names[0], 0);
    info.size = env_int(names[1], 1);
    info.local_rank = env_int(names[2], info.rank);
    break;
  }
  return info;
}

inline void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw std::runtime_error(std::string(what) + ": " + ncclGetErrorString(r));
}
inline void cuda_check(cudaError_t r, const char* what) {
  if (r != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(r));
}

// This process's GPU and its communicator over all launched ranks.
class NcclWorld {
 public:
  // Selects the GPU local_rank % (visible GPUs) and joins the communicator.
  // Throws std::runtime_error with the reason (no GPU, no id directory, a
  // rank that never published its id within timeout_s).
  explicit NcclWorld(double timeout_s = 120) : info_(launch_info()) {
    int n = 0;
    cuda_check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    if (n == 0) throw std::runtime_error("no CUDA device");
    device_ = info_.local_rank % n;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id;
    if (info_.size == 1) {
      nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    } else {
      const char* dir = std::getenv("DILATED_NCCL_ID_DIR");
      if (!dir || !*dir)
        throw std::runtime_error(
            "DILATED_NCCL_ID_DIR is not set: start the ranks with perf_tests/launch_ranks.sh");
      const std::string path = std::string(dir) + "/nccl_unique_id";
      if (info_.rank == 0) {
        nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        const std::string tmp = path + ".tmp." + std::to_string(getpid());
        std::FILE* f = std::fopen(tmp.c_str(), "wb");
        if (!f || std::fwrite(&id, sizeof id, 1, f) != 1 || std::fclose(f) != 0)
          throw std::runtime_error("cannot write " + tmp);
        if (std::rename(tmp.c_str(), path.c_str()) != 0)
          throw std::runtime_error("cannot rename to " + path);
      } else {
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
        for (;;) {
          std::FILE* f = std::fopen(path.c_str(), "rb");
          if (f) {
            const bool ok = std::fread(&id, sizeof id, 1, f) == 1;
            std::fclose(f);
            if (ok) break;
          }
          if (std::chrono::steady_clock::now() > until)
            throw std::runtime_error("rank 0 did not publish " + path);
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    }
    nccl_check(ncclCommInitRank(&comm_, info_.size, id, info_.rank), "ncclCommInitRank");
  }
  ~NcclWorld() {
    if (comm_) ncclCommDestroy(comm_);
  }
  NcclWorld(const NcclWorld&) = delete;
  NcclWorld& operator=(const NcclWorld&) = delete;

  ncclComm_t comm() const { return comm_; }
  int rank() const { return info_.rank; }
  int size() const { return info_.size; }
  int local_rank() const { return info_.local_rank; }
  int device() const { return device_; }

 private:
  LaunchInfo info_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
};

}  // namespace dtest
