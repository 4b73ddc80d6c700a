// The c-ares backend. Each thread has one channel (per configuration
// generation) shared by all of its lookups. A lookup starts its query, then
// parks on the request's event; while queries are pending one driver greenlet
// services the channel: it greenev::poll()s the channel's sockets (learned
// from sock_state_cb) plus an eventfd that new lookups poke, with ares_timeout()
// as the limit, and feeds what is ready to ares_process_fd(). c-ares calls our
// callbacks from there; they only store the answer and set the event.
// docs/design.md ("DNS") has the lifetime rules.
#include <ares.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include <greenev/event.hpp>
#include <greenev/io.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/task.hpp>

#include "dns_internal.hpp"

namespace greenev::detail::dns {

namespace {

class channel_state;

// Queries of one channel on the wire at once (see channel_state::slots_).
constexpr std::size_t max_in_flight = 128;

// One lookup. Shared by the waiting caller and the c-ares callback, so that
// either may go first: a killed caller leaves the request to the callback.
struct request {
  channel_state* owner = nullptr;  // outlives the callback: callbacks run inside calls on its channel
  greenev::event done;
  bool finished = false;
  bool abandoned = false;  // the caller stopped waiting (killed, timed out)
  int status = ARES_SUCCESS;
  int flags = 0;  // AI_CANONNAME for getaddrinfo
  resolved_host resolved;
  host_entry entry;
  std::string node;
  std::string service;
};

// What c-ares carries as the callback argument: one reference to the request.
using request_ref = std::shared_ptr<request>;

void init_library() {
  static std::once_flag once;
  static int status = ARES_SUCCESS;
  std::call_once(once, [] { status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (status != ARES_SUCCESS) {
    throw std::runtime_error(std::string("greenev: ares_library_init: ") + ares_strerror(status));
  }
}

// c-ares opens, uses and closes its sockets through these, so that closing
// goes through greenev (cancel_wait first: the driver may be polling the fd).
ares_socket_t open_socket(int domain, int type, int protocol, void* /*state*/) {
  const int fd = ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return ARES_SOCKET_BAD;
  if (type == SOCK_DGRAM) {
    // Every lookup of the thread shares this socket: a burst of a thousand
    // answers must fit while the driver is not reading (capped by rmem_max).
    const int size = 1 << 20;
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  return fd;
}

int close_socket(ares_socket_t fd, void* /*state*/) {
  greenev::cancel_wait(fd);
  return ::close(fd);
}

int connect_socket(ares_socket_t fd, const sockaddr* to, ares_socklen_t length, void* /*state*/) {
  return ::connect(fd, to, length);
}

ares_ssize_t receive(ares_socket_t fd, void* buffer, std::size_t length, int flags, sockaddr* from,
                     ares_socklen_t* from_length, void* /*state*/) {
  return ::recvfrom(fd, buffer, length, flags, from, from_length);
}

ares_ssize_t send_vector(ares_socket_t fd, const iovec* parts, int count, void* /*state*/) {
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(parts);
  message.msg_iovlen = static_cast<std::size_t>(count);
  return ::sendmsg(fd, &message, MSG_NOSIGNAL);  // a reset TCP connection must not raise SIGPIPE
}

const ares_socket_functions socket_functions = {open_socket, close_socket, connect_socket, receive,
                                                send_vector};

std::string describe_servers(const resolver_options& options) {
  if (options.nameservers.empty()) return "the nameservers of /etc/resolv.conf";
  std::string text;
  for (const std::string& server : options.nameservers) text += (text.empty() ? "" : ", ") + server;
  return text;
}

std::string family_name(int family) {
  return family == AF_INET ? "IPv4 " : family == AF_INET6 ? "IPv6 " : "";
}

// c-ares status -> resolver_error. `reverse`: the lookup was address -> name.
[[noreturn]] void fail_status(int status, const std::string& host, int family, bool reverse,
                              const resolver_options& options) {
  const auto seconds = std::chrono::duration<double>(options.timeout.duration()).count();
  switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
      fail(EAI_NONAME, resolver_failure::not_found, host,
           reverse ? "no name for this address" : "no such host");
    case ARES_ENODATA:
      fail(EAI_NODATA, resolver_failure::no_data, host, "the name has no " + family_name(family) + "address");
    case ARES_ETIMEOUT:
      fail(EAI_AGAIN, resolver_failure::timeout, host,
           "timed out: no answer from " + describe_servers(options) + " (" + std::to_string(options.tries) +
               " tries, " + std::to_string(seconds) + " s per try)");
    case ARES_ESERVFAIL:
      fail(EAI_AGAIN, resolver_failure::server_failure, host, "the nameserver failed (SERVFAIL)");
    case ARES_EREFUSED:
      fail(EAI_FAIL, resolver_failure::server_failure, host, "the nameserver refused the query");
    case ARES_ECONNREFUSED:
      fail(EAI_AGAIN, resolver_failure::server_failure, host,
           "could not reach " + describe_servers(options) + " (connection refused)");
    case ARES_EBADNAME:
    case ARES_EBADQUERY:
    case ARES_EFORMERR:
      fail(EAI_NONAME, resolver_failure::bad_input, host,
           std::string("malformed name: ") + ares_strerror(status));
    case ARES_EBADFAMILY:
      fail(EAI_FAMILY, resolver_failure::bad_input, host, ares_strerror(status));
    case ARES_EBADFLAGS:
    case ARES_EBADHINTS:
      fail(EAI_BADFLAGS, resolver_failure::bad_input, host, ares_strerror(status));
    case ARES_ESERVICE:
      fail(EAI_SERVICE, resolver_failure::bad_service, host, ares_strerror(status));
    case ARES_ENOMEM:
      fail(EAI_MEMORY, resolver_failure::system, host, "out of memory");
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      fail(EAI_CANCELED, resolver_failure::cancelled, host, "the resolver was shut down during the lookup");
    default:
      fail(EAI_FAIL, resolver_failure::server_failure, host, ares_strerror(status));
  }
}

std::string address_text(int family, const void* raw) {
  char text[INET6_ADDRSTRLEN] = {};
  return ::inet_ntop(family, raw, text, sizeof text) != nullptr ? std::string(text) : std::string();
}

host_entry to_entry(const hostent& host) {
  host_entry entry;
  if (host.h_name != nullptr) entry.name = host.h_name;
  for (char** alias = host.h_aliases; alias != nullptr && *alias != nullptr; ++alias)
    entry.aliases.emplace_back(*alias);
  for (char** raw = host.h_addr_list; raw != nullptr && *raw != nullptr; ++raw) {
    entry.addresses.push_back(address_text(host.h_addrtype, *raw));
  }
  return entry;
}

class channel_state : public std::enable_shared_from_this<channel_state> {
 public:
  channel_state(const settings& config, const std::string& host) : options_(config.options) {
    generation_ = config.generation;
    init_library();
    kick_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (kick_fd_ < 0) throw std::system_error(errno, std::generic_category(), "greenev: resolver eventfd");
    ares_options options{};
    options.sock_state_cb = &channel_state::on_socket_state;
    options.sock_state_cb_data = this;
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout.duration()).count();
    options.timeout = static_cast<int>(std::clamp<std::int64_t>(ms, 1, 24 * 3600 * 1000));
    options.tries = options_.tries;
    int status =
        ares_init_options(&channel_, &options, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (status == ARES_SUCCESS) {
      ares_set_socket_functions(channel_, &socket_functions, this);
      if (!options_.nameservers.empty()) {
        std::string csv;
        for (const std::string& server : options_.nameservers) csv += (csv.empty() ? "" : ",") + server;
        status = ares_set_servers_ports_csv(channel_, csv.c_str());
      }
    }
    if (status != ARES_SUCCESS) {
      shutdown();
      fail(status == ARES_ENOMEM ? EAI_MEMORY : EAI_SYSTEM, resolver_failure::system, host,
           std::string("c-ares could not set up a channel: ") + ares_strerror(status));
    }
  }
  channel_state(const channel_state&) = delete;
  channel_state& operator=(const channel_state&) = delete;
  ~channel_state() { shutdown(); }

  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  [[nodiscard]] const resolver_options& options() const noexcept { return options_; }

  // Destroys the channel: pending callbacks run with ARES_EDESTRUCTION (their
  // callers wake with an error), sockets close through close_socket().
  void shutdown() noexcept {
    if (ares_channel channel = std::exchange(channel_, nullptr)) ares_destroy(channel);
    if (kick_fd_ >= 0) {
      greenev::cancel_wait(kick_fd_);
      ::close(std::exchange(kick_fd_, -1));
    }
  }

  // Starts a query with `submit(channel, callback_argument)` and makes sure
  // the driver runs. Switches only while max_in_flight queries are pending.
  // The callback may already have run.
  template <class Submit>
  request_ref start(int flags, Submit&& submit) {
    auto r = std::make_shared<request>();
    r->owner = this;
    r->flags = flags;
    slots_.acquire();
    if (channel_ == nullptr) {  // shut down (the thread is exiting)
      slots_.release();
      r->finished = true;
      r->status = ARES_EDESTRUCTION;
      return r;
    }
    ++pending_;
    ++live_pending_;
    submit(channel_, static_cast<void*>(new request_ref(r)));
    if (!r->finished) {
      if (!driver_running_) {
        driver_running_ = true;
        greenev::spawn([self = shared_from_this()] { self->drive(); });
      } else if (driver_parked_) {
        kick();
      }
    }
    return r;
  }

  // Parks until `r` finished. Switches. If the caller is killed or times out
  // meanwhile, the request is abandoned; the last abandoned one cancels the
  // channel's queries so that no socket, watcher or driver outlives them.
  void wait(request& r) {
    struct abandon_unless_finished {
      channel_state& self;
      request& r;
      ~abandon_unless_finished() {
        if (!r.finished) self.abandon(r);
      }
    } guard{*this, r};
    while (!r.finished) r.done.wait();
  }

  // From the c-ares callbacks.
  void complete(request& r, int status) noexcept {
    r.status = status;
    r.finished = true;
    --pending_;
    slots_.release();  // the query left the wire, even if its caller had left before
    if (!r.abandoned) --live_pending_;
    r.done.set();
  }

 private:
  void abandon(request& r) noexcept {
    r.abandoned = true;
    --live_pending_;
    if (live_pending_ == 0 && pending_ > 0 && channel_ != nullptr) {
      ares_cancel(channel_);  // only abandoned queries are left
      if (driver_parked_) kick();
    }
  }

  void kick() noexcept {
    if (kicked_ || kick_fd_ < 0) return;
    const std::uint64_t one = 1;
    kicked_ = ::write(kick_fd_, &one, sizeof one) == sizeof one;
  }

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) noexcept {
    auto& self = *static_cast<channel_state*>(data);
    auto& sockets = self.sockets_;
    for (auto it = sockets.begin(); it != sockets.end(); ++it) {
      if (it->fd != fd) continue;
      if (readable == 0 && writable == 0) {
        sockets.erase(it);
      } else {
        it->events = static_cast<short>((readable != 0 ? POLLIN : 0) | (writable != 0 ? POLLOUT : 0));
      }
      return;
    }
    if (readable != 0 || writable != 0) {
      sockets.push_back(
          {fd, static_cast<short>((readable != 0 ? POLLIN : 0) | (writable != 0 ? POLLOUT : 0)), 0});
    }
  }

  // The driver greenlet: runs while queries are pending.
  void drive() {
    struct stopped_on_exit {
      channel_state& self;
      ~stopped_on_exit() {
        self.driver_running_ = false;
        self.driver_parked_ = false;
      }
    } guard{*this};
    std::vector<pollfd> fds;
    while (pending_ > 0 && channel_ != nullptr) {
      fds.clear();
      fds.push_back({kick_fd_, POLLIN, 0});
      fds.insert(fds.end(), sockets_.begin(), sockets_.end());
      timeval buffer{};
      const timeval* next = ares_timeout(channel_, nullptr, &buffer);
      const wait_time limit =
          next == nullptr
              ? wait_time::forever()
              : wait_time(std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
      bool closed = false;
      driver_parked_ = true;
      try {
        greenev::poll(fds, limit);
      } catch (const std::system_error& error) {
        if (error.code() != std::errc::bad_file_descriptor) throw;
        closed = true;  // c-ares closed a socket we watched (ares_cancel, a destroyed channel)
      }
      driver_parked_ = false;
      if (closed) continue;
      if (fds.front().revents != 0) {
        std::uint64_t count = 0;
        (void)::read(kick_fd_, &count, sizeof count);
        kicked_ = false;
      }
      bool handled = false;
      for (std::size_t i = 1; i < fds.size() && channel_ != nullptr; ++i) {
        const short revents = fds[i].revents;
        if (revents == 0 || (revents & POLLNVAL) != 0) continue;
        const bool readable = (revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        const bool writable =
            (fds[i].events & POLLOUT) != 0 && (revents & (POLLOUT | POLLERR | POLLHUP)) != 0;
        ares_process_fd(channel_, readable ? fds[i].fd : ARES_SOCKET_BAD,
                        writable ? fds[i].fd : ARES_SOCKET_BAD);
        handled = true;
      }
      if (!handled && channel_ != nullptr)
        ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
      // Only queries nobody waits for are left: end them now rather than at
      // their timeout (callbacks cannot do this: c-ares is inside a call).
      if (live_pending_ == 0 && pending_ > 0 && channel_ != nullptr) ares_cancel(channel_);
    }
  }

  resolver_options options_;
  std::uint64_t generation_ = 0;
  ares_channel channel_ = nullptr;
  int kick_fd_ = -1;
  std::vector<pollfd> sockets_;   // what c-ares wants watched, from sock_state_cb
  std::size_t pending_ = 0;       // queries whose callback has not run
  std::size_t live_pending_ = 0;  // ... and whose caller still waits
  bool driver_running_ = false;
  bool driver_parked_ = false;
  bool kicked_ = false;  // the eventfd holds an unread poke
  // All of a thread's queries share one UDP socket per server: a burst of a
  // thousand overflows the server's receive buffer (dnsmasq's default holds
  // a few hundred queries), and every dropped query costs a full timeout.
  // Lookups beyond this many wait their turn here, in FIFO order.
  greenev::semaphore slots_{max_in_flight};
};

// Every channel of this thread; the current one is shared by new lookups.
// Declared after the hub's thread-local is created (channel_for), so it is
// destroyed first, while the hub still exists: its destructor shuts every
// channel down (waking callers with an error, closing sockets through
// greenev); greenlets still holding a channel are unwound by the hub later.
struct thread_channels {
  std::shared_ptr<channel_state> current;
  std::vector<std::weak_ptr<channel_state>> all;
  thread_channels() = default;
  thread_channels(const thread_channels&) = delete;
  thread_channels& operator=(const thread_channels&) = delete;
  ~thread_channels() {
    for (const auto& weak : all) {
      if (const auto channel = weak.lock()) channel->shutdown();
    }
  }
};
thread_local thread_channels tls_channels;

std::shared_ptr<channel_state> channel_for(const settings& config, const std::string& host) {
  // Thread-locals die in reverse order of creation, and ours calls into the
  // hub and into io.cpp's per-thread wait table when it dies: create those
  // first. cancel_wait() on an fd that cannot be open only touches the table.
  (void)greenev::hub::current();
  (void)greenev::cancel_wait(std::numeric_limits<int>::max());
  thread_channels& channels = tls_channels;
  if (!channels.current || channels.current->generation() != config.generation) {
    std::erase_if(channels.all, [](const auto& weak) { return weak.expired(); });
    // A retired channel lives on while its driver or callers hold it.
    channels.current = std::make_shared<channel_state>(config, host);
    channels.all.push_back(channels.current);
  }
  return channels.current;
}

request& from_argument(void* argument, std::unique_ptr<request_ref>& held) {
  held.reset(static_cast<request_ref*>(argument));
  return **held;
}

void on_addrinfo(void* argument, int status, int /*timeouts*/, ares_addrinfo* result) noexcept {
  std::unique_ptr<request_ref> held;
  request& r = from_argument(argument, held);
  const std::unique_ptr<ares_addrinfo, void (*)(ares_addrinfo*)> owned(result, ares_freeaddrinfo);
  if (status == ARES_SUCCESS && result != nullptr && !r.abandoned) {
    try {
      for (const ares_addrinfo_node* node = result->nodes; node != nullptr; node = node->ai_next) {
        r.resolved.addresses.emplace_back(node->ai_addr, static_cast<socklen_t>(node->ai_addrlen));
      }
      if ((r.flags & AI_CANONNAME) != 0) {
        const ares_addrinfo_cname* last = result->cnames;
        while (last != nullptr && last->next != nullptr) last = last->next;
        if (last != nullptr && last->name != nullptr) {
          r.resolved.canonical_name = last->name;
        } else if (result->name != nullptr) {
          r.resolved.canonical_name = result->name;
        }
      }
      if (r.resolved.addresses.empty()) status = ARES_ENODATA;
    } catch (...) {
      status = ARES_ENOMEM;
    }
  }
  r.owner->complete(r, status);
}

void on_host(void* argument, int status, int /*timeouts*/, hostent* host) noexcept {
  std::unique_ptr<request_ref> held;
  request& r = from_argument(argument, held);
  if (status == ARES_SUCCESS && host != nullptr && !r.abandoned) {
    try {
      r.entry = to_entry(*host);
    } catch (...) {
      status = ARES_ENOMEM;
    }
  }
  r.owner->complete(r, status);
}

void on_name_info(void* argument, int status, int /*timeouts*/, char* node, char* service) noexcept {
  std::unique_ptr<request_ref> held;
  request& r = from_argument(argument, held);
  if (status == ARES_SUCCESS && !r.abandoned) {
    try {
      if (node != nullptr) r.node = node;
      if (service != nullptr) r.service = service;
    } catch (...) {
      status = ARES_ENOMEM;
    }
  }
  r.owner->complete(r, status);
}

int ares_flags(int flags) {
  int result = 0;
  if ((flags & AI_CANONNAME) != 0) result |= ARES_AI_CANONNAME;
  if ((flags & AI_V4MAPPED) != 0) result |= ARES_AI_V4MAPPED;
  if ((flags & AI_ALL) != 0) result |= ARES_AI_ALL;
  if ((flags & AI_ADDRCONFIG) != 0) result |= ARES_AI_ADDRCONFIG;
  return result;
}

int ares_name_flags(int flags) {
  int result = ARES_NI_LOOKUPHOST | ARES_NI_LOOKUPSERVICE;
  if ((flags & NI_NOFQDN) != 0) result |= ARES_NI_NOFQDN;
  if ((flags & NI_NUMERICHOST) != 0) result |= ARES_NI_NUMERICHOST;
  if ((flags & NI_NAMEREQD) != 0) result |= ARES_NI_NAMEREQD;
  if ((flags & NI_NUMERICSERV) != 0) result |= ARES_NI_NUMERICSERV;
  if ((flags & NI_DGRAM) != 0) result |= ARES_NI_DGRAM;
  return result;
}

}  // namespace

resolved_host ares_resolve(const std::string& host, int family, int flags, const settings& config) {
  const auto channel = channel_for(config, host);
  const request_ref r = channel->start(flags, [&](ares_channel c, void* argument) {
    ares_addrinfo_hints hints{};
    hints.ai_family = family;
    hints.ai_flags = ares_flags(flags);
    ares_getaddrinfo(c, host.c_str(), nullptr, &hints, on_addrinfo, argument);
  });
  channel->wait(*r);
  if (r->status != ARES_SUCCESS) fail_status(r->status, host, family, false, channel->options());
  return std::move(r->resolved);
}

host_entry ares_host_by_name(const std::string& name, const settings& config) {
  const auto channel = channel_for(config, name);
  const request_ref r = channel->start(0, [&](ares_channel c, void* argument) {
    ares_gethostbyname(c, name.c_str(), AF_INET, on_host, argument);
  });
  channel->wait(*r);
  if (r->status != ARES_SUCCESS) fail_status(r->status, name, AF_INET, false, channel->options());
  if (r->entry.addresses.empty()) fail_status(ARES_ENODATA, name, AF_INET, false, channel->options());
  return std::move(r->entry);
}

host_entry ares_host_by_address(const address& ip, const std::string& text, const settings& config) {
  const auto channel = channel_for(config, text);
  const request_ref r = channel->start(0, [&](ares_channel c, void* argument) {
    if (ip.family() == AF_INET) {
      const auto& raw = reinterpret_cast<const sockaddr_in*>(ip.data())->sin_addr;
      ares_gethostbyaddr(c, &raw, sizeof raw, AF_INET, on_host, argument);
    } else {
      const auto& raw = reinterpret_cast<const sockaddr_in6*>(ip.data())->sin6_addr;
      ares_gethostbyaddr(c, &raw, sizeof raw, AF_INET6, on_host, argument);
    }
  });
  channel->wait(*r);
  if (r->status != ARES_SUCCESS) fail_status(r->status, text, ip.family(), true, channel->options());
  return std::move(r->entry);
}

std::pair<std::string, std::string> ares_name_info(const address& a, int flags, const settings& config) {
  const std::string shown = a.to_string();
  const auto channel = channel_for(config, shown);
  const request_ref r = channel->start(0, [&](ares_channel c, void* argument) {
    ares_getnameinfo(c, a.data(), a.size(), ares_name_flags(flags), on_name_info, argument);
  });
  channel->wait(*r);
  if (r->status != ARES_SUCCESS) fail_status(r->status, shown, a.family(), true, channel->options());
  return {std::move(r->node), std::move(r->service)};
}

}  // namespace greenev::detail::dns
