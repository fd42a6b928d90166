#include "memory/memory_report.hpp"

#include <cstdio>
#include <sstream>

#include "memory/numa.hpp"
#include "memory/pool_resource.hpp"
#include "memory/tracking_resource.hpp"

namespace dilated {
namespace memory {

std::string memory_report(const PoolResource& pool, const TrackingResource* tracking,
                          const std::string& placement_note) {
  const PoolStats s = pool.stats();
  std::ostringstream o;
  o << "memory report (" << pool.name() << ", " << to_string(pool.kind()) << ")\n";
  o << "  reserved " << format_bytes(s.reserved) << " (peak " << format_bytes(s.peak_reserved)
    << ") in " << s.segments << " segment(s); requested " << format_bytes(s.requested) << " (peak "
    << format_bytes(s.peak_requested) << ")\n";
  char frag[64];
  std::snprintf(frag, sizeof frag, "%.3f", s.fragmentation());
  o << "  allocations " << s.allocations << ", upstream allocations " << s.upstream_allocations
    << ", peak reserved / peak requested " << frag << "\n";
  if (tracking) {
    const TrackingStats t = tracking->stats();
    o << "  by size (bucket >= : allocations, live):";
    int shown = 0;
    for (int k = 0; k < kSizeBuckets; ++k)
      if (t.histogram[k]) {
        o << (shown++ % 4 ? "  " : "\n    ") << format_bytes(bucket_floor(k)) << ": "
          << t.histogram[k] << ", " << t.live[k];
      }
    o << "\n";
  }
  if (!placement_note.empty()) o << "  placement: " << placement_note << "\n";
  PagePlacement total;
  for (const auto& seg : pool.segments()) {
    const PagePlacement p = page_placement(seg.first, seg.second, 256);
    total.known = p.known;
    total.pages += p.pages;
    total.sampled += p.sampled;
    total.not_resident += p.not_resident;
    if (p.per_node.size() > total.per_node.size()) total.per_node.resize(p.per_node.size(), 0);
    for (std::size_t n = 0; n < p.per_node.size(); ++n) total.per_node[n] += p.per_node[n];
  }
  o << "  NUMA pages: " << (total.pages ? total.to_string() : std::string("no segments held"))
    << "\n";
  return o.str();
}

}  // namespace memory
}  // namespace dilated
