// dist/mpi_communicator.hpp - the MPI transport (host buffers; device buffers
// too when the MPI library is CUDA-aware and the user says so).
#pragma once

#include <mpi.h>

#include <vector>

#include "dist/communicator.hpp"

namespace dilated {
namespace dist {

class MpiCommunicator final : public Communicator {
 public:
  // Collective over `comm`. Duplicates it, so the library's messages can
  // never match the user's own; MPI must already be initialised (by the
  // user) and must outlive this object. cuda_aware: the MPI library accepts
  // device pointers (e.g. OpenMPI built with CUDA), so device Views may be
  // passed without staging.
  explicit MpiCommunicator(MPI_Comm comm, bool cuda_aware = false);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }
  void allreduce_min_max(const std::int64_t* in, std::int64_t* min, std::int64_t* max,
                         int n) override;
  void start_exchange(const void* send, std::size_t send_bytes, int dest, void* recv,
                      std::size_t recv_bytes, int src) override;
  void wait() override;
  bool stream_ordered() const override { return false; }
  bool accepts_host_memory() const override { return true; }
  bool accepts_device_memory() const override { return cuda_aware_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool cuda_aware_ = false;
  std::vector<MPI_Request> pending_;
};

}  // namespace dist
}  // namespace dilated
