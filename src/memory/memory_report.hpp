// memory/memory_report.hpp - the human-readable "memory report".
//
// Peak and current figures of a pool, the size histogram of a tracking
// adaptor above it (per bucket: allocations and live blocks), and where the
// pool's pages are (NUMA placement). Printed by examples/longnet_demo.
#pragma once

#include <string>

namespace dilated {
namespace memory {

class PoolResource;
class TrackingResource;

// `tracking` may be null; `placement_note` is a line about how the pool's
// upstream places memory (e.g. NumaHostResource::status()).
std::string memory_report(const PoolResource& pool, const TrackingResource* tracking = nullptr,
                          const std::string& placement_note = "");

}  // namespace memory
}  // namespace dilated
