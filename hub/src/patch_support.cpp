// Queries for the libc interposers (greenev/detail/patch_support.hpp). They
// read the hub's thread-local pointer directly so that an interposed read()
// costs a few loads when it must pass straight through to libc.
#include <greenev/detail/patch_support.hpp>

#include "hub_impl.hpp"

namespace greenev::detail {

bool may_park_here() noexcept {
  const hub_impl* hub = current_hub;
  return hub != nullptr && !hub->in_hub();
}

bool hub_exists_on_this_thread() noexcept {
  return current_hub != nullptr;
}

}  // namespace greenev::detail
