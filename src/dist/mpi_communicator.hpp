// dist/mpi_communicator.hpp - the MPI transport (host buffers; device buffers
// too when the MPI library is CUDA-aware and the user says so).
#pragma once

#include <mpi.h>

#include <condition_variable>
#include <mutex>
#include <thread>
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
  //
  // progress_thread: most MPI libraries move a large (rendezvous) message
  // only while the sender and receiver are inside an MPI call, so a transfer
  // started before a compute kernel would otherwise wait for wait(). With
  // this option a helper thread of this object polls the open transfers
  // (MPI_Testall, short sleeps between polls) so they complete during
  // compute. Needs MPI_THREAD_MULTIPLE from MPI_Init_thread; throws
  // dist.mpi_thread_level otherwise.
  struct Options {
    bool cuda_aware = false;
    bool progress_thread = false;
    int poll_interval_us = 20;
  };
  explicit MpiCommunicator(MPI_Comm comm, Options options);
  explicit MpiCommunicator(MPI_Comm comm, bool cuda_aware = false)
      : MpiCommunicator(comm, Options{cuda_aware, false, 20}) {}
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
  void progress_loop();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool cuda_aware_ = false;
  int poll_us_ = 20;
  std::vector<MPI_Request> pending_;  // without a progress thread
  // With one: new requests are queued for the thread, which owns them until
  // they complete; wait() sleeps until `outstanding_` is 0.
  std::thread progress_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<MPI_Request> queued_;
  std::size_t outstanding_ = 0;
  bool stop_ = false;
  int error_code_ = MPI_SUCCESS;
};

}  // namespace dist
}  // namespace dilated
