// dist/phase_timer.hpp - optional attribution of SeqParallelPlan's time to
// the phases of its ring (compute, zeroing, accumulator adds, waits), for
// benchmarks. Off unless a timer is attached (set_phase_timer): then every
// mark fences the execution space, so the phases no longer overlap - the
// sum shows where the time goes, not the overlapped call's length.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace dilated {
namespace dist {

class PhaseTimer {
 public:
  // Starts the clock of the next phase (call after a fence).
  void start() { last_ = std::chrono::steady_clock::now(); }
  // The time since the last start/lap goes to `phase`.
  void lap(const char* phase) {
    const auto now = std::chrono::steady_clock::now();
    seconds_[phase] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }
  void clear() { seconds_.clear(); }
  const std::map<std::string, double>& seconds() const { return seconds_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::map<std::string, double> seconds_;
};

}  // namespace dist
}  // namespace dilated
