// dist/communicator.hpp - what sequence parallelism needs from a transport,
// and nothing more: rank/size, one small collective for validation, and the
// point-to-point step of a ring.
//
// Implementations (mpi_communicator.hpp, nccl_communicator.hpp) wrap a
// communicator the USER created: the library never initialises MPI or NCCL
// and keeps no global state. Tests run the real transports under mpirun; a
// mocked communicator would prove nothing about them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dilated {
namespace dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;

  // Element-wise minimum and maximum over all ranks of n int64 values in host
  // memory. Collective: every rank calls it with the same n. Used to validate
  // before any data moves (one cheap round trip).
  virtual void allreduce_min_max(const std::int64_t* in, std::int64_t* min, std::int64_t* max,
                                 int n) = 0;

  // Starts one ring step: sends send_bytes from `send` to rank `dest` and
  // receives recv_bytes into `recv` from rank `src`; dest or src = -1 skips
  // that half. Returns without waiting; wait() completes every started
  // transfer. Buffers must stay untouched until wait() returns (stream-ordered
  // transports: until the stream has passed the transfer).
  virtual void start_exchange(const void* send, std::size_t send_bytes, int dest, void* recv,
                              std::size_t recv_bytes, int src) = 0;
  virtual void wait() = 0;

  // true (NCCL): transfers are enqueued on the plan's stream, ordered with
  // the kernels around them. false (MPI): the caller fences the kernels that
  // produce a send buffer before start_exchange, and reads a received buffer
  // only after wait().
  virtual bool stream_ordered() const = 0;
  // Which memory the transport can read and write directly.
  virtual bool accepts_host_memory() const = 0;
  virtual bool accepts_device_memory() const = 0;
};

}  // namespace dist
}  // namespace dilated
