// The stack overflow reporter: a SIGSEGV handler, on an alternate signal
// stack, that names the greenlet whose guard page was hit.
#include <signal.h>
#include <sys/mman.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "stack_internal.hpp"

namespace greenev::detail {

namespace {

struct sigaction previous_segv_action;
std::once_flag segv_once;

// Appends `text` to buf at *len (bounded), async-signal-safe.
void append(char* buf, std::size_t cap, std::size_t* len, const char* text) noexcept {
  while (*text != '\0' && *len + 1 < cap) buf[(*len)++] = *text++;
}

void append_number(char* buf, std::size_t cap, std::size_t* len, std::size_t value) noexcept {
  char digits[24];
  std::size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && n < sizeof digits);
  while (n > 0 && *len + 1 < cap) buf[(*len)++] = digits[--n];
}

// The stack pointer of the interrupted code, or 0 where unknown.
std::uintptr_t interrupted_stack_pointer([[maybe_unused]] const void* context) noexcept {
  const auto* state = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(state->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(state->uc_mcontext.sp);
#else
  (void)state;
  return 0;
#endif
}

// A fault in the guard is an overflow. So is one with the stack pointer
// below the stack: a frame larger than the guard that skipped it faulted
// further down (unmapped memory, another stack's guard). The window below
// the guard bounds that to plausible frames, so that a fault on some other
// stack the code switched to is not taken for one.
constexpr std::size_t skipped_frame_limit = std::size_t{1} << 20;

bool is_overflow(const stack_memory& stack, const void* fault_address, const void* context) noexcept {
  const auto bottom = reinterpret_cast<std::uintptr_t>(stack.bottom);
  const auto address = reinterpret_cast<std::uintptr_t>(fault_address);
  const std::size_t guard = guard_size();
  if (address < bottom && bottom - address <= guard) return true;
  const std::uintptr_t sp = interrupted_stack_pointer(context);
  return sp != 0 && sp < bottom && bottom - sp <= guard + skipped_frame_limit;
}

void on_segv(int signal_number, siginfo_t* info, void* context) {
  running_stack_info running;
  if (describe_running_stack(running) && running.stack.guarded) {
    if (is_overflow(running.stack, info->si_addr, context)) {
      char message[512];
      std::size_t len = 0;
      append(message, sizeof message, &len, "greenev: stack overflow in greenlet ");
      if (running.name != nullptr) {
        append(message, sizeof message, &len, running.name);
      } else {
        append(message, sizeof message, &len, "greenlet-");
        append_number(message, sizeof message, &len, running.id);
      }
      append(message, sizeof message, &len, " (");
      append_number(message, sizeof message, &len, running.stack.size / 1024);
      append(message, sizeof message, &len, " KiB stack)\n");
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message, len);
      std::abort();
    }
  }
  // Not a greenlet overflow: hand over to whoever was installed before us.
  if ((previous_segv_action.sa_flags & SA_SIGINFO) != 0 && previous_segv_action.sa_sigaction != nullptr) {
    previous_segv_action.sa_sigaction(signal_number, info, context);
    return;
  }
  if (previous_segv_action.sa_handler != SIG_DFL && previous_segv_action.sa_handler != SIG_IGN) {
    previous_segv_action.sa_handler(signal_number);
    return;
  }
  // Default action: restore it and return; the faulting access repeats.
  ::signal(signal_number, SIG_DFL);
}

// The alternate signal stack of this thread, if greenev installed it.
struct alternate_stack {
  void* memory = nullptr;
  std::size_t size = 0;
  ~alternate_stack() {
    if (memory == nullptr) return;
    stack_t disable{};
    disable.ss_flags = SS_DISABLE;
    ::sigaltstack(&disable, nullptr);
    ::munmap(memory, size);
  }
};
thread_local alternate_stack thread_alternate_stack;

}  // namespace

void install_overflow_reporter() {
  std::call_once(segv_once, [] {
    struct sigaction action {};
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSEGV, &action, &previous_segv_action);
  });
  if (thread_alternate_stack.memory != nullptr) return;
  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) return;
  const std::size_t size = round_to_pages(64 * 1024);
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return;  // overflow then dies with a plain SIGSEGV
  stack_t alt{};
  alt.ss_sp = memory;
  alt.ss_size = size;
  if (::sigaltstack(&alt, nullptr) != 0) {
    ::munmap(memory, size);
    return;
  }
  thread_alternate_stack.memory = memory;
  thread_alternate_stack.size = size;
}

}  // namespace greenev::detail
