// Private: the only door to Boost.Context's raw fcontext API.
//
// greenev switches stacks with boost::context::detail::make_fcontext and
// jump_fcontext directly, beneath boost::context::fiber: no fiber record,
// no ontop call, and so none of fiber_fcontext.hpp's CET shadow-stack
// bookkeeping. A build that turns shadow stacks on is refused at configure
// time (docs/design.md, "Raw fcontext and CET shadow stacks"). Forced-inline
// one-liners: the switch compiles exactly as the direct call did.
#pragma once

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>

namespace greenev::detail {

using raw_context = boost::context::detail::fcontext_t;
using context_transfer = boost::context::detail::transfer_t;

// Lays out a frame at `top` that enters `entry` on the first jump to it.
[[gnu::always_inline]] inline raw_context make_context(void* top, std::size_t size,
                                                       void (*entry)(context_transfer)) noexcept {
  return boost::context::detail::make_fcontext(top, size, entry);
}

// Suspends the caller and resumes `to`; returns once something jumps back.
[[gnu::always_inline]] inline context_transfer jump_context(raw_context to, void* data) noexcept {
  return boost::context::detail::jump_fcontext(to, data);
}

}  // namespace greenev::detail
