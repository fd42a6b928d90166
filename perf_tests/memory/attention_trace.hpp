// attention_trace.hpp - the allocation trace of LongNet training steps.
//
// What a training loop of a dilated-attention transformer asks of a device
// workspace pool, step by step: per layer the forward keeps Q, K, V, the
// output, the LSE and the MLP hidden state for the backward, and uses
// short-lived per-branch gather buffers (one per (w_i, r_i) of the LongNet
// schedule, 1/r_i of the tokens); the backward, in reverse layer order, takes
// dOut, the delta workspace, dQ/dK/dV and dHidden, then frees what the layer
// saved. Sequence lengths vary between steps (variable-length batches), which
// is what makes pools fragment. Generated deterministically from a seed; the
// same format as EventLog's CSV (allocate/free, id, bytes) so a recorded
// trace can be replayed instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace dilated {
namespace memory {
namespace bench {

struct TraceOp {
  bool allocate;
  std::uint32_t id;   // slot of the block (allocate and its free share it)
  std::size_t bytes;
};

struct TraceShape {
  int layers = 12, heads = 16, head_dim = 128, element_bytes = 2;  // bf16
  std::vector<std::int64_t> seq_lens = {32768, 49152, 65536, 98304, 131072};
  std::vector<int> dilations = {1, 2, 4, 6, 12};
};

inline std::vector<TraceOp> attention_trace(int steps, std::uint64_t seed,
                                            const TraceShape& shape = {}) {
  std::vector<TraceOp> ops;
  std::mt19937_64 rng(seed);
  std::uint32_t next_id = 0;
  auto alloc = [&](std::size_t bytes) {
    ops.push_back({true, next_id, bytes});
    return next_id++;
  };
  auto release = [&](std::uint32_t id) {
    for (auto it = ops.rbegin(); it != ops.rend(); ++it)
      if (it->allocate && it->id == id) {
        ops.push_back({false, id, it->bytes});
        return;
      }
  };
  for (int step = 0; step < steps; ++step) {
    const std::int64_t n = shape.seq_lens[rng() % shape.seq_lens.size()];
    const std::size_t act = std::size_t(n) * shape.heads * shape.head_dim * shape.element_bytes;
    const std::size_t lse = std::size_t(n) * shape.heads * 4;  // float32
    struct Saved {
      std::uint32_t q, k, v, out, lse, hidden;
    };
    std::vector<Saved> saved;
    for (int l = 0; l < shape.layers; ++l) {
      Saved s{alloc(act), alloc(act), alloc(act), alloc(act), alloc(lse), 0};
      for (int r : shape.dilations) {  // per-branch gather + partial result
        const std::uint32_t gather = alloc(3 * act / r);
        const std::uint32_t part = alloc(act / r);
        const std::uint32_t part_lse = alloc(lse / r);
        release(gather);
        release(part);
        release(part_lse);
      }
      s.hidden = alloc(4 * act);
      saved.push_back(s);
    }
    std::uint32_t dout = alloc(act);
    for (int l = shape.layers - 1; l >= 0; --l) {
      const Saved& s = saved[l];
      const std::uint32_t dhidden = alloc(4 * act);
      const std::uint32_t delta = alloc(lse);
      const std::uint32_t dq = alloc(act), dk = alloc(act), dv = alloc(act);
      release(delta);
      release(dhidden);
      for (std::uint32_t id : {s.q, s.k, s.v, s.out, s.lse, s.hidden, dout, dk, dv}) release(id);
      dout = dq;  // the gradient flowing to the layer below
    }
    release(dout);
  }
  return ops;
}

}  // namespace bench
}  // namespace memory
}  // namespace dilated
