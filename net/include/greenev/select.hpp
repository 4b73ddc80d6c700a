// Cooperative select (gevent.select.select): waits until some of the given fds
// are ready, parking only the calling greenlet. (The cooperative poll is
// greenev::poll in io.hpp.)
//
//   auto ready = greenev::select({listener.fd(), client.fd()}, {}, {}, 1.0);
//   for (int fd : ready.readable) ...
#pragma once

#include <optional>
#include <span>
#include <vector>

namespace greenev {

/// What select() found ready, each list in the order the fds were given.
struct select_result {
  std::vector<int> readable;     ///< Readable, at end of stream, or with an error pending.
  std::vector<int> writable;     ///< Writable, or with an error pending.
  std::vector<int> exceptional;  ///< Urgent (out-of-band) data pending.
};

/// Returns the fds of each list that are ready, in the order given; all three
/// empty if `timeout_seconds` passed first. No timeout (nullopt) waits until
/// something is ready; 0 never switches. Unlike select(2) there is no
/// FD_SETSIZE limit. A peer hang-up or socket error counts as readable (the
/// next read reports it), as with select(2). Throws std::invalid_argument for
/// a negative or NaN timeout, std::system_error(EBADF) for an fd that is not
/// open (or closed by close_fd while waiting), greenlet_error in the hub.
/// Switches unless something is ready at once.
select_result select(std::span<const int> read, std::span<const int> write, std::span<const int> except,
                     std::optional<double> timeout_seconds = std::nullopt);

}  // namespace greenev
