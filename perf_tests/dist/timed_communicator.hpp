// A timing decorator around any src/dist transport, for the overlap
// benchmarks: it records every ring step a call makes and the time spent
// blocked in wait() - the communication the compute did not hide. replay()
// runs the same steps again back to back with no compute in between: the
// transfer time alone. hidden fraction = 1 - blocked / alone.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

#include "dist/communicator.hpp"

namespace dilated_bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Share of the transfer time the compute hid, clamped to [0, 1].
inline double hidden_fraction(double exposed, double alone) {
  return alone > 0 ? std::max(0.0, std::min(1.0, 1.0 - exposed / alone)) : 0.0;
}

class TimedCommunicator final : public dilated::dist::Communicator {
 public:
  struct Event {
    bool wait;
    std::size_t send_bytes, recv_bytes;
    int dest, src;
  };
  explicit TimedCommunicator(dilated::dist::Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const char* name() const override { return inner_.name(); }
  void allreduce_min_max(const std::int64_t* in, std::int64_t* mn, std::int64_t* mx,
                         int n) override {
    inner_.allreduce_min_max(in, mn, mx, n);
  }
  void start_exchange(const void* send, std::size_t sb, int dest, void* recv, std::size_t rb,
                      int src) override {
    events.push_back({false, sb, rb, dest, src});
    if (dest >= 0) bytes += sb;
    inner_.start_exchange(send, sb, dest, recv, rb, src);
  }
  void wait() override {
    events.push_back({true, 0, 0, -1, -1});
    const double t0 = now_s();
    inner_.wait();
    wait_s += now_s() - t0;
  }
  bool stream_ordered() const override { return inner_.stream_ordered(); }
  bool accepts_host_memory() const override { return inner_.accepts_host_memory(); }
  bool accepts_device_memory() const override { return inner_.accepts_device_memory(); }

  void reset() {
    events.clear();
    wait_s = 0;
    bytes = 0;
  }
  // The largest single transfer recorded: replay's buffers need this many bytes.
  std::size_t largest_transfer() const {
    std::size_t most = 1;
    for (const Event& e : events) most = std::max({most, e.send_bytes, e.recv_bytes});
    return most;
  }
  // The recorded steps again, back to back, between buffers `a` (sent) and `b`
  // (received) of largest_transfer() bytes in memory the transport accepts;
  // `barrier` lines the ranks up first. Returns the seconds they took.
  template <class Barrier>
  double replay(const void* a, void* b, Barrier&& barrier) {
    barrier();
    const double t0 = now_s();
    for (const Event& e : events) {
      if (e.wait)
        inner_.wait();
      else
        inner_.start_exchange(a, e.send_bytes, e.dest, b, e.recv_bytes, e.src);
    }
    return now_s() - t0;
  }

  std::vector<Event> events;
  double wait_s = 0;
  std::size_t bytes = 0;

 private:
  dilated::dist::Communicator& inner_;
};

}  // namespace dilated_bench
