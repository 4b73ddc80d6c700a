// tests/support/tsan_forked_children.hpp — forked children under ThreadSanitizer.
//
// Include in exactly one file of a test executable whose test process forks
// children that run greenlets (it defines two functions). Under TSan it:
//  - sets die_after_fork=0: a child of a threaded process may start threads
//    (threadpool workers, the stack prefault helper); TSan dies otherwise;
//  - drops TSan's reports in processes forked from the test process, and only
//    there. TSan models each greenlet as a fiber, and in a forked child it
//    loses the ordering its fiber switches gave: it reports races between
//    greenlets of one OS thread (the main greenlet and the hub, at the child's
//    first switch) that cannot happen. The children still run instrumented
//    and their exit status still decides the test; the test process itself,
//    where TSan follows every switch, keeps every report.
// __tsan::OnReport is the runtime's weak hook for filtering reports (exported
// by GCC's and LLVM's libtsan); returning true suppresses one.
#pragma once

#include <greenev/detail/sanitizers.hpp>

#ifdef GREENEV_DETAIL_TU_TSAN
#include <unistd.h>

namespace __tsan {
struct ReportDesc;
bool OnReport(const ReportDesc* report, bool suppressed);
}  // namespace __tsan

namespace greenev::testing::detail {
// The process the test runs in (a death test's process has its own: it is a
// fresh exec of the test binary, not a fork).
inline const pid_t tsan_test_process = ::getpid();
}  // namespace greenev::testing::detail

bool __tsan::OnReport(const __tsan::ReportDesc*, bool suppressed) {
  return suppressed || ::getpid() != greenev::testing::detail::tsan_test_process;
}

extern "C" const char* __tsan_default_options() {
  return "die_after_fork=0";
}
#endif
