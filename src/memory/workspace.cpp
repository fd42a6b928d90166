#include "memory/workspace.hpp"

#include "memory/numa.hpp"
#include "memory/system_memory.hpp"

namespace dilated {
namespace memory {

namespace {
struct HostStack {
  NumaHostResource upstream;
  PoolResource pool;
  TrackingResource tracking;
  WorkspaceStack view;
  static PoolOptions options() {
    PoolOptions o;
    o.name = "workspace-host";
    // Give cached workspaces back when the machine runs short.
    o.policy.min_available_fraction = 0.05;
    o.policy.probe = host_system_memory;
    return o;
  }
  HostStack() : pool(upstream, options()), tracking(pool) {
    view.upstream = &upstream;
    view.pool = &pool;
    view.tracking = &tracking;
    view.placement = upstream.status();
  }
};
}  // namespace

WorkspaceStack& host_workspace_stack() {
  static HostStack stack;
  return stack.view;
}

}  // namespace memory
}  // namespace dilated
