// select on top of the cooperative poll: one pollfd per distinct fd.
#include <greenev/select.hpp>

#include <poll.h>

#include <cerrno>
#include <cmath>
#include <stdexcept>
#include <string>
#include <system_error>

#include <greenev/io.hpp>

namespace greenev {

select_result select(std::span<const int> read, std::span<const int> write, std::span<const int> except,
                     std::optional<double> timeout_seconds) {
  if (timeout_seconds && (std::isnan(*timeout_seconds) || *timeout_seconds < 0)) {
    throw std::invalid_argument(
        "greenev: select: the timeout must be a non-negative number of seconds, not " +
        std::to_string(*timeout_seconds));
  }
  std::vector<pollfd> entries;
  const auto add = [&](std::span<const int> fds, short events) {
    for (const int fd : fds) {
      if (fd < 0)
        throw std::system_error(EBADF, std::generic_category(),
                                "greenev: select: bad fd " + std::to_string(fd));
      pollfd* entry = nullptr;
      for (pollfd& existing : entries) {
        if (existing.fd == fd) entry = &existing;
      }
      if (entry == nullptr) entry = &entries.emplace_back(pollfd{fd, 0, 0});
      entry->events = static_cast<short>(entry->events | events);
    }
  };
  add(read, POLLIN);
  add(write, POLLOUT);
  add(except, POLLPRI);
  const wait_time timeout = timeout_seconds ? wait_time(*timeout_seconds) : wait_time::forever();
  // Pollers with nothing to watch still wait out the timeout, as select(2) does.
  if (entries.empty()) {
    if (timeout.is_forever())
      throw std::invalid_argument("greenev: select with no fds and no timeout waits forever");
    sleep(timeout);
    return {};
  }
  poll(entries, timeout);

  select_result result;
  const auto revents_of = [&](int fd) {
    for (const pollfd& entry : entries) {
      if (entry.fd == fd) return entry.revents;
    }
    return short{0};
  };
  for (const pollfd& entry : entries) {
    if ((entry.revents & POLLNVAL) != 0) {
      throw std::system_error(EBADF, std::generic_category(),
                              "greenev: select: bad fd " + std::to_string(entry.fd));
    }
  }
  for (const int fd : read) {
    if ((revents_of(fd) & (POLLIN | POLLHUP | POLLERR)) != 0) result.readable.push_back(fd);
  }
  for (const int fd : write) {
    if ((revents_of(fd) & (POLLOUT | POLLERR)) != 0) result.writable.push_back(fd);
  }
  for (const int fd : except) {
    if ((revents_of(fd) & POLLPRI) != 0) result.exceptional.push_back(fd);
  }
  return result;
}

}  // namespace greenev
