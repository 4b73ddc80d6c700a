// Private: one-shot readiness notifications, how greenev::wait / iwait learn
// that an event or async_result became ready without being one of its waiters.
#pragma once

#include <greenev/detail/intrusive_fifo.hpp>

namespace greenev::detail {

// Unlinked from its list before notify() runs, which must not switch.
struct observer : fifo_hook<observer> {
  void (*notify)(observer& self) noexcept = nullptr;
};

using observer_list = intrusive_fifo<observer>;

inline void notify_all(observer_list& list) noexcept {
  while (observer* o = list.pop_front()) o->notify(*o);
}

}  // namespace greenev::detail
