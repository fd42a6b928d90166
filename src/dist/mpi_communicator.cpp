// dist/mpi_communicator.cpp - MPI transport: MPI_Allreduce for validation,
// MPI_Irecv/MPI_Isend pairs for ring steps.
#include "dist/mpi_communicator.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "dilated/error.hpp"
#include "memory/pool_resource.hpp"
#if DILATED_ENABLE_CUDA
#include "memory/cuda_resources.hpp"
#endif

namespace dilated {
namespace dist {
namespace {

// MPI counts are int: messages are cut into pieces of at most 1 GiB.
constexpr std::size_t kMaxPiece = std::size_t(1) << 30;
constexpr int kTag = 0xD11A;

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS)
    throw Error("dist.mpi", std::string(what) + " failed with MPI error code " + std::to_string(rc));
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, Options options)
    : cuda_aware_(options.cuda_aware), poll_us_(options.poll_interval_us) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized)
    throw Error("dist.mpi_initialized",
                "MPI is not initialised: call MPI_Init (or MPI_Init_thread) before building a "
                "dilated::dist::MpiCommunicator; the library never initialises MPI itself");
  if (!cuda_aware_) {
    StagingCopier* copier = options.staging_copier;
#if DILATED_ENABLE_CUDA
    if (!copier) {
      own_copier_ = make_cuda_staging_copier();
      copier = own_copier_.get();
    }
#endif
    if (copier) {
      memory::MemoryResource* host = options.staging_memory;
#if DILATED_ENABLE_CUDA
      if (!host) {
        own_pinned_ = std::make_unique<memory::PinnedHostResource>();
        memory::PoolOptions po;
        po.name = "mpi-staging-pool";
        own_pool_ = std::make_unique<memory::PoolResource>(*own_pinned_, po);
        host = own_pool_.get();
      }
#endif
      if (!host)
        throw Error("dist.host_staging",
                    "MpiCommunicator: a staging_copier needs staging_memory in a build without "
                    "CUDA (there is no pinned host upstream)");
      staging_ = std::make_unique<HostStaging>(*host, *copier);
    }
  }
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  if (options.progress_thread) {
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    if (level != MPI_THREAD_MULTIPLE) {
      MPI_Comm_free(&comm_);
      throw Error("dist.mpi_thread_level",
                  "the MPI progress thread needs MPI_Init_thread(..., MPI_THREAD_MULTIPLE, ...); "
                  "MPI was initialised with thread level " + std::to_string(level));
    }
    progress_ = std::thread([this] { progress_loop(); });
  }
}

void MpiCommunicator::progress_loop() {
  std::vector<MPI_Request> mine;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queued_.empty() || !mine.empty(); });
      if (stop_ && queued_.empty() && mine.empty()) return;
      mine.insert(mine.end(), queued_.begin(), queued_.end());
      queued_.clear();
    }
    int done = 0;
    const int rc =
        MPI_Testall(static_cast<int>(mine.size()), mine.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS || done) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (rc != MPI_SUCCESS) error_code_ = rc;
      outstanding_ -= mine.size();
      mine.clear();
      cv_.notify_all();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(poll_us_));
    }
  }
}

MpiCommunicator::~MpiCommunicator() {
  if (progress_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    progress_.join();  // after the open transfers completed
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) {
    if (!pending_.empty())
      MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    MPI_Comm_free(&comm_);
  }
  if (staging_) {  // staged receives of the completed transfers reach their buffers
    try {
      if (!finalized) staging_->complete();
    } catch (...) {  // a destructor does not throw; the blocks go back regardless
    }
    staging_->discard();
  }
}

void MpiCommunicator::allreduce_min_max(const std::int64_t* in, std::int64_t* min,
                                        std::int64_t* max, int n) {
  // One call: reduce (v, -v) with MIN, which gives min(v) and -max(v).
  std::vector<std::int64_t> both(2 * static_cast<std::size_t>(n)), out(both.size());
  for (int i = 0; i < n; ++i) {
    both[i] = in[i];
    both[n + i] = in[i] == INT64_MIN ? INT64_MAX : -in[i];
  }
  check(MPI_Allreduce(both.data(), out.data(), 2 * n, MPI_INT64_T, MPI_MIN, comm_),
        "MPI_Allreduce");
  for (int i = 0; i < n; ++i) {
    min[i] = out[i];
    max[i] = -out[n + i];
  }
}

void MpiCommunicator::start_exchange(const void* send, std::size_t send_bytes, int dest,
                                     void* recv, std::size_t recv_bytes, int src) {
  if (staging_) {  // device buffers: host blocks instead (the send copied now)
    if (dest >= 0) send = staging_->send_buffer(send, send_bytes);
    if (src >= 0) recv = staging_->recv_buffer(recv, recv_bytes);
  }
  const std::size_t first_new = pending_.size();
  // Receives are posted first so that a matching send never waits for them.
  if (src >= 0)
    for (std::size_t off = 0; off < recv_bytes || off == 0; off += kMaxPiece) {
      const std::size_t n = recv_bytes - off < kMaxPiece ? recv_bytes - off : kMaxPiece;
      pending_.emplace_back();
      check(MPI_Irecv(static_cast<char*>(recv) + off, static_cast<int>(n), MPI_BYTE, src, kTag,
                      comm_, &pending_.back()),
            "MPI_Irecv");
      if (recv_bytes == 0) break;
    }
  if (dest >= 0)
    for (std::size_t off = 0; off < send_bytes || off == 0; off += kMaxPiece) {
      const std::size_t n = send_bytes - off < kMaxPiece ? send_bytes - off : kMaxPiece;
      pending_.emplace_back();
      check(MPI_Isend(static_cast<const char*>(send) + off, static_cast<int>(n), MPI_BYTE, dest,
                      kTag, comm_, &pending_.back()),
            "MPI_Isend");
      if (send_bytes == 0) break;
    }
  if (progress_.joinable()) {  // hand the new requests to the progress thread
    std::lock_guard<std::mutex> lock(mutex_);
    queued_.insert(queued_.end(), pending_.begin() + static_cast<std::ptrdiff_t>(first_new),
                   pending_.end());
    outstanding_ += pending_.size() - first_new;
    pending_.resize(first_new);
    cv_.notify_all();
  }
}

void MpiCommunicator::wait() {
  if (!staging_) return wait_transport();
  try {
    wait_transport();
  } catch (...) {
    staging_->discard();
    throw;
  }
  staging_->complete();  // received blocks to their device buffers
}

void MpiCommunicator::wait_transport() {
  if (progress_.joinable()) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return outstanding_ == 0; });
    const int rc = error_code_;
    error_code_ = MPI_SUCCESS;
    lock.unlock();
    check(rc, "MPI_Testall (progress thread)");
    return;
  }
  if (pending_.empty()) return;
  check(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE),
        "MPI_Waitall");
  pending_.clear();
}

}  // namespace dist
}  // namespace dilated
