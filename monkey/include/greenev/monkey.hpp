// greenev/monkey.hpp — make unmodified blocking code cooperative
// (gevent.monkey): after patch_all(), libc's blocking calls made inside a
// greenlet park only that greenlet, so third-party C code (libcurl's easy
// API, hand-written POSIX socket code, std::this_thread::sleep_for,
// getaddrinfo) runs concurrently in greenlets without being changed.
//
//   greenev::monkey::patch_all();                       // first thing in main()
//   auto t = greenev::spawn([] { return curl_easy_perform(handle); });
//   greenev::monkey::blocking_call([&] { legacy_client(); });  // kills unwind here
//
// How: greenev defines read, write, recv, send, connect, accept, poll, select,
// nanosleep, getaddrinfo, close, fcntl, ... in the program itself (with the
// shared libraries, in libgreenev_monkey.so, for any program that loads it);
// they switch to the hub when the call would block, and call libc otherwise. Any greenlet
// of a thread that has a hub cooperates, its main greenlet included. A call
// goes straight to libc when its group is not patched, on a thread that has
// no hub (std::thread workers), in the hub itself (a loop callback), for an
// fd the user made non-blocking, and for fds that are neither sockets nor
// pipes made after patching (regular files, ttys, inherited pipes).
// docs/design.md ("Interposition") has the rules, and what the LD_PRELOAD
// library libgreenev_preload.so is for; docs/errors.md has the libc contract
// the interposers keep.
//
// Threading: patching is process-wide and cannot be undone. Call patch_*()
// before greenlets do IO (an fd already blocked in libc stays there), ideally
// first in main(). The calls are thread-safe and idempotent.
#pragma once

#include <exception>
#include <functional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace greenev::monkey {

/// The groups of libc calls that can be patched.
enum class patch_target {
  socket,  ///< read/write/recv/send families, connect, accept, socket, pipe, dup, close, fcntl,
           ///< ioctl(FIONBIO), setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)
  time,    ///< sleep, usleep, nanosleep, clock_nanosleep (so std::this_thread::sleep_for)
  dns,  ///< getaddrinfo/freeaddrinfo, gethostbyname, gethostbyname2, gethostbyname_r, gethostbyaddr (c-ares)
  select,  ///< poll, ppoll, select, pselect
};

/// Patches every group. Never switches, never throws. Idempotent.
void patch_all() noexcept;
/// Patches one group each. Never switch, never throw. Idempotent.
void patch_socket() noexcept;
void patch_time() noexcept;
void patch_dns() noexcept;
void patch_select() noexcept;

/// Whether `what` is patched in this process. Never switches, never throws.
[[nodiscard]] bool is_patched(patch_target what) noexcept;
/// The same by gevent's module names: "socket", "time", "dns", "select"
/// (unknown names are false). Never switches, never throws.
[[nodiscard]] bool is_patched(std::string_view what) noexcept;

/// Whether a kill or a timeout interrupted a patched libc call of the calling
/// greenlet and has not been rethrown yet (see blocking_call). Never switches.
[[nodiscard]] bool interrupted() noexcept;

/// Rethrows, and forgets, the exception (greenlet_exit, timeout_error, ...)
/// that interrupted a patched libc call of the calling greenlet, if any;
/// otherwise returns. Call it once the C code that made the call has
/// returned. Never switches.
void rethrow_if_interrupted();

/// Runs `f(args...)` — typically a call into C code that blocks in patched
/// libc functions — and returns its result. An exception cannot cross a C
/// frame, so a kill (greenlet_exit) or an outer greenev::timeout arriving
/// while a patched call inside `f` waits makes that call fail (-1/ECANCELED,
/// docs/errors.md) and every later patched call of this greenlet fail at once
/// without switching, until `f` returns; then blocking_call rethrows it, so
/// the greenlet unwinds as it would in C++ code. The sockets and pipes such
/// a call failed on stay dead ("poisoned"): every later read, write or
/// connect on them fails with -1/ECONNABORTED until close(), so the C library
/// sees a lost connection rather than reading a stale answer
/// (docs/caveats.md). Switches whenever `f` does.
/// Throws what `f` throws, else the pending interruption.
template <class F, class... Args>
std::invoke_result_t<F, Args...> blocking_call(F&& f, Args&&... args) {
  if constexpr (std::is_void_v<std::invoke_result_t<F, Args...>>) {
    std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    rethrow_if_interrupted();
  } else {
    auto result = std::invoke(std::forward<F>(f), std::forward<Args>(args)...);
    rethrow_if_interrupted();
    return result;
  }
}

}  // namespace greenev::monkey
