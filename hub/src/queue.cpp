// Queues are templates (queue.hpp); this holds the one question they ask the
// hub's private state.
#include <greenev/queue.hpp>

#include "hub_impl.hpp"

namespace greenev::detail {

bool calling_from_hub() {
  return running_in_hub();
}

}  // namespace greenev::detail
