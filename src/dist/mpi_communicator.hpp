// dist/mpi_communicator.hpp - the MPI transport (host buffers; device buffers
// directly when the MPI library is CUDA-aware and the user says so, else, in
// CUDA builds, through pinned host staging blocks).
#pragma once

#include <mpi.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "dist/communicator.hpp"
#include "dist/host_staging.hpp"
#include "memory/resource.hpp"

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
  //
  // Host staging (cuda_aware = false): in CUDA builds device buffers travel
  // through page-locked host blocks (a pool over PinnedHostResource owned by
  // this object; host_staging.hpp), copied with cudaMemcpy, so device Views
  // work with any MPI. staging_copier / staging_memory replace the copier
  // and the host memory (tests stage chosen host buffers on the CPU); with a
  // copier given, staging is on in any build.
  struct Options {
    bool cuda_aware = false;
    bool progress_thread = false;
    int poll_interval_us = 20;
    StagingCopier* staging_copier = nullptr;
    memory::MemoryResource* staging_memory = nullptr;
  };
  explicit MpiCommunicator(MPI_Comm comm, Options options);
  explicit MpiCommunicator(MPI_Comm comm, bool cuda_aware = false)
      : MpiCommunicator(comm, make_options(cuda_aware)) {}
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
  bool accepts_device_memory() const override { return cuda_aware_ || staging_ != nullptr; }
  // Whether device buffers go through host staging blocks.
  bool host_staging() const { return staging_ != nullptr; }

 private:
  static Options make_options(bool cuda_aware) {
    Options o;
    o.cuda_aware = cuda_aware;
    return o;
  }
  void progress_loop();
  void wait_transport();

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
  // Host staging (destroyed before the memory it uses: declared after it).
  std::unique_ptr<StagingCopier> own_copier_;
  std::unique_ptr<memory::MemoryResource> own_pinned_, own_pool_;
  std::unique_ptr<HostStaging> staging_;
};

}  // namespace dist
}  // namespace dilated
