// The c-ares backend. Each thread has one channel (per configuration
// generation) shared by all of its lookups. A lookup starts its query, then
// parks on the request's event; while queries are pending one driver greenlet
// services the channel: it greenev::poll()s the channel's sockets (learned
// from sock_state_cb) plus an eventfd that new lookups poke, with ares_timeout()
// as the limit, and feeds what is ready to ares_process_fd(). c-ares calls our
// callbacks from there; they only store the answer and set the event.
// Every lookup has its own deadline, and one that c-ares failed because of
// another query's trouble is asked again on a channel of its own.
// docs/design.md ("DNS") has the lifetime rules and the isolation story.
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
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include <greenev/detail/thread_service.hpp>
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

using lookup_clock = std::chrono::steady_clock;

// What went wrong on a channel's sockets, counted by the socket functions
// below. c-ares 1.18 reports all of it as ARES_ECONNREFUSED (or as nothing,
// when a retry succeeds); these say what really happened.
struct transport_events {
  std::uint32_t refused = 0;  // ECONNREFUSED: nothing listens on the nameserver's port
  std::uint32_t closed = 0;   // the nameserver closed a TCP connection
  std::uint32_t failed = 0;   // another socket error; last_errno says which
  int last_errno = 0;
};

// One lookup. Shared by the waiting caller and the c-ares callback, so that
// either may go first: a killed caller leaves the request to the callback.
struct request {
  channel_state* owner = nullptr;  // outlives the callback: callbacks run inside calls on its channel
  greenev::event done;
  bool finished = false;
  bool abandoned = false;  // the caller stopped waiting (killed, timed out)
  int status = ARES_SUCCESS;
  int flags = 0;              // AI_CANONNAME for getaddrinfo
  transport_events at_start;  // the channel's counts when the query was sent
  resolved_host resolved;
  host_entry entry;
  std::string node;
  std::string service;
};

// What c-ares carries as the callback argument: one reference to the request.
using request_ref = std::shared_ptr<request>;

// How one attempt at a lookup ended: `status` is c-ares's, or ARES_ETIMEOUT
// when the lookup's deadline passed first; `seen` is what the channel's
// sockets went through meanwhile.
struct outcome {
  int status = ARES_SUCCESS;
  request_ref r;
  transport_events seen;
};

void init_library() {
  static std::once_flag once;
  static int status = ARES_SUCCESS;
  std::call_once(once, [] { status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (status != ARES_SUCCESS) {
    throw std::runtime_error(std::string("greenev: ares_library_init: ") + ares_strerror(status));
  }
}

transport_events& events_of(void* state) noexcept;

void note_error(void* state, int error) noexcept {
  transport_events& events = events_of(state);
  if (error == ECONNREFUSED) {
    ++events.refused;
  } else {
    ++events.failed;
    events.last_errno = error;
  }
}

// c-ares opens, uses and closes its sockets through these, so that closing
// goes through greenev (cancel_wait first: the driver may be polling the fd),
// and so that the channel learns what went wrong on the wire.
ares_socket_t open_socket(int domain, int type, int protocol, void* state) {
  const int fd = ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    note_error(state, errno);
    return ARES_SOCKET_BAD;
  }
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

int connect_socket(ares_socket_t fd, const sockaddr* to, ares_socklen_t length, void* state) {
  const int result = ::connect(fd, to, length);
  if (result != 0 && errno != EINPROGRESS) note_error(state, errno);
  return result;
}

// c-ares reads TCP with no `from`: a zero there is the server closing.
ares_ssize_t receive(ares_socket_t fd, void* buffer, std::size_t length, int flags, sockaddr* from,
                     ares_socklen_t* from_length, void* state) {
  const ares_ssize_t got = ::recvfrom(fd, buffer, length, flags, from, from_length);
  if (got == 0 && from == nullptr) {
    ++events_of(state).closed;
  } else if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    const int error = errno;
    note_error(state, error);
    errno = error;
  }
  return got;
}

ares_ssize_t send_vector(ares_socket_t fd, const iovec* parts, int count, void* state) {
  msghdr message{};
  message.msg_iov = const_cast<iovec*>(parts);
  message.msg_iovlen = static_cast<std::size_t>(count);
  // MSG_NOSIGNAL: a reset TCP connection must not raise SIGPIPE.
  const ares_ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
  if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    const int error = errno;
    note_error(state, error);
    errno = error;
  }
  return sent;
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

std::string seconds_text(std::chrono::nanoseconds d) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", std::chrono::duration<double>(d).count());
  return text;
}

// c-ares status -> resolver_error, one message per cause. `reverse`: the
// lookup was address -> name. `seen`: what the sockets went through, which
// tells apart the causes c-ares 1.18 folds into ARES_ECONNREFUSED.
[[noreturn]] void fail_status(int status, const transport_events& seen, const std::string& host, int family,
                              bool reverse, const resolver_options& options) {
  const std::string servers = describe_servers(options);
  switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
      fail(EAI_NONAME, resolver_failure::not_found, host,
           reverse ? "no name for this address" : "no such host");
    case ARES_ENODATA:
      fail(EAI_NODATA, resolver_failure::no_data, host, "the name has no " + family_name(family) + "address");
    case ARES_ETIMEOUT:
      fail(EAI_AGAIN, resolver_failure::timeout, host,
           "timed out: no answer from " + servers + " (" + std::to_string(options.tries) + " tries, " +
               seconds_text(options.timeout.duration()) + " per try)");
    case ARES_ESERVFAIL:
      fail(EAI_AGAIN, resolver_failure::server_failure, host,
           "the nameserver failed to answer (SERVFAIL from " + servers + ")");
    case ARES_EREFUSED:
      fail(EAI_FAIL, resolver_failure::server_failure, host,
           "the nameserver refused the query (REFUSED from " + servers + ")");
    case ARES_ENOTIMP:
      fail(EAI_FAIL, resolver_failure::server_failure, host,
           "the nameserver does not implement this query (NOTIMP from " + servers + ")");
    case ARES_EFORMERR:
      fail(EAI_FAIL, resolver_failure::server_failure, host,
           "the nameserver could not parse the query (FORMERR from " + servers + ")");
    case ARES_EBADRESP:
      fail(EAI_FAIL, resolver_failure::server_failure, host, "malformed answer from " + servers);
    case ARES_ECONNREFUSED:
      // c-ares's word for "every try failed on the wire", whatever the cause.
      if (seen.refused > 0) {
        fail(EAI_AGAIN, resolver_failure::server_failure, host,
             "could not reach " + servers + " (connection refused)");
      }
      if (seen.closed > 0) {
        fail(EAI_AGAIN, resolver_failure::server_failure, host,
             servers + " closed the TCP connection without answering");
      }
      if (seen.failed > 0) {
        fail(EAI_AGAIN, resolver_failure::server_failure, host,
             "could not talk to " + servers + ": " + std::strerror(seen.last_errno));
      }
      fail(EAI_AGAIN, resolver_failure::server_failure, host, "could not send the query to " + servers);
    case ARES_EBADNAME:
    case ARES_EBADQUERY:
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
    case ARES_EFILE:
    case ARES_EOF:
      fail(EAI_SYSTEM, resolver_failure::system, host,
           std::string("c-ares could not read its configuration: ") + ares_strerror(status));
    case ARES_ECANCELLED:
      fail(EAI_CANCELED, resolver_failure::cancelled, host, "the query was cancelled");
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
  // `isolated`: the channel of one lookup asked again (run_lookup()), its
  // nameserver list turned by `rotation` places.
  channel_state(const settings& config, const std::string& host, bool isolated = false, int rotation = 0)
      : options_(config.options), generation_(config.generation), isolated_(isolated) {
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
    // SERVFAIL, REFUSED and NOTIMP answers reach the callback as their own
    // status; without this c-ares 1.18 retries them and reports "connection
    // refused". run_lookup() asks the next nameserver itself.
    options.flags = ARES_FLAG_NOCHECKRESP;
    int status = ares_init_options(
        &channel_, &options, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
    if (status == ARES_SUCCESS) {
      ares_set_socket_functions(channel_, &socket_functions, this);
      if (!options_.nameservers.empty()) {
        std::string csv;
        for (const std::string& server : options_.nameservers) csv += (csv.empty() ? "" : ",") + server;
        status = ares_set_servers_ports_csv(channel_, csv.c_str());
      }
    }
    if (status == ARES_SUCCESS) status = count_and_rotate_servers(rotation);
    if (status != ARES_SUCCESS) {
      shutdown();
      fail(status == ARES_ENOMEM ? EAI_MEMORY : EAI_SYSTEM, resolver_failure::system, host,
           std::string("c-ares could not set up a channel: ") + ares_strerror(status));
    }
    // What c-ares spends on a query nobody answers: every try of every
    // server, the wait doubling after each round.
    const int rounds = std::clamp(options_.tries, 1, 20);
    const auto per_try = std::chrono::milliseconds(options.timeout);
    budget_ = std::min<std::chrono::nanoseconds>(per_try * servers_ * ((std::int64_t{1} << rounds) - 1),
                                                 std::chrono::hours(24));
  }
  channel_state(const channel_state&) = delete;
  channel_state& operator=(const channel_state&) = delete;
  ~channel_state() { shutdown(); }

  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  [[nodiscard]] const resolver_options& options() const noexcept { return options_; }
  [[nodiscard]] bool isolated() const noexcept { return isolated_; }
  [[nodiscard]] int server_count() const noexcept { return servers_; }
  /// How long a lookup may take, from when it is asked.
  [[nodiscard]] std::chrono::nanoseconds budget() const noexcept { return budget_; }
  [[nodiscard]] transport_events& events() noexcept { return events_; }

  // Destroys the channel: pending callbacks run with ARES_EDESTRUCTION (their
  // callers wake with an error), sockets close through close_socket().
  void shutdown() noexcept {
    if (ares_channel channel = std::exchange(channel_, nullptr)) ares_destroy(channel);
    if (kick_fd_ >= 0) {
      greenev::cancel_wait(kick_fd_);
      ::close(std::exchange(kick_fd_, -1));
    }
  }

  // Runs one query: takes an in-flight slot, starts the query with
  // `submit(channel, callback_argument)`, makes sure the driver runs and
  // waits for the answer, all before `deadline` (else ARES_ETIMEOUT).
  // Switches. If the caller is killed or times out meanwhile, the request is
  // abandoned; the last abandoned one cancels the channel's queries so that
  // no socket, watcher or driver outlives them.
  template <class Submit>
  outcome run(int flags, lookup_clock::time_point deadline, Submit& submit) {
    outcome o;
    o.r = std::make_shared<request>();
    request& r = *o.r;
    r.owner = this;
    r.flags = flags;
    // Behind max_in_flight others, a lookup still keeps its own deadline.
    if (!slots_.acquire(time_left(deadline))) {
      o.status = ARES_ETIMEOUT;
      return o;
    }
    if (channel_ == nullptr) {  // shut down (the thread is exiting)
      slots_.release();
      o.status = ARES_EDESTRUCTION;
      return o;
    }
    ++pending_;
    ++live_pending_;
    r.at_start = events_;
    submit(channel_, static_cast<void*>(new request_ref(o.r)));
    if (!r.finished) {
      if (!driver_running_) {
        driver_running_ = true;
        greenev::spawn([self = shared_from_this()] { self->drive(); });
      } else if (driver_parked_) {
        kick();
      }
    }
    bool answered = false;
    {
      struct abandon_unless_finished {
        channel_state& self;
        request& r;
        ~abandon_unless_finished() {
          if (!r.finished) self.abandon(r);
        }
      } guard{*this, r};
      while (!r.finished && r.done.wait(time_left(deadline))) {
      }
      answered = r.finished;  // abandoning may cancel (and so finish) it
    }
    o.status = answered ? r.status : ARES_ETIMEOUT;
    o.seen = {events_.refused - r.at_start.refused, events_.closed - r.at_start.closed,
              events_.failed - r.at_start.failed, events_.last_errno};
    return o;
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
  static wait_time time_left(lookup_clock::time_point deadline) {
    return wait_time(deadline - lookup_clock::now());
  }

  // Counts the channel's nameservers (resolv.conf's or ours) and turns the
  // list by `rotation` places, so that an isolated retry asks the next one
  // first.
  int count_and_rotate_servers(int rotation) {
    ares_addr_port_node* head = nullptr;
    const int status = ares_get_servers_ports(channel_, &head);
    if (status != ARES_SUCCESS) return status;
    std::vector<ares_addr_port_node*> nodes;
    for (ares_addr_port_node* node = head; node != nullptr; node = node->next) nodes.push_back(node);
    servers_ = std::max<int>(1, static_cast<int>(nodes.size()));
    int result = ARES_SUCCESS;
    if (nodes.size() > 1 && rotation % static_cast<int>(nodes.size()) != 0) {
      std::rotate(nodes.begin(), nodes.begin() + rotation % static_cast<int>(nodes.size()), nodes.end());
      for (std::size_t i = 0; i < nodes.size(); ++i)
        nodes[i]->next = i + 1 < nodes.size() ? nodes[i + 1] : nullptr;
      head = nodes.front();
      result = ares_set_servers_ports(channel_, head);
    }
    if (head != nullptr) ares_free_data(head);
    return result;
  }

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
  bool isolated_ = false;
  int servers_ = 1;
  std::chrono::nanoseconds budget_{0};
  transport_events events_;
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

transport_events& events_of(void* state) noexcept {
  return static_cast<channel_state*>(state)->events();
}

// Every channel of this thread; the current one is shared by new lookups.
// A service of the thread's runtime: before the thread's greenlets are
// unwound it shuts every channel down (callers wake with an error, sockets
// close through greenev); greenlets still holding a channel are unwound
// after that.
struct thread_channels : greenev::detail::thread_service {
  std::shared_ptr<channel_state> current;
  std::vector<std::weak_ptr<channel_state>> all;
  void before_unwind() noexcept override { shutdown_all(); }
  // The channels' UDP and TCP sockets (and their wake-up eventfd) are the
  // parent's too: a reply could reach either process. The child shuts them
  // down (lookups in flight fail, their sockets close here only) and makes
  // a channel of its own on next use.
  void after_fork_in_child() noexcept override {
    shutdown_all();
    current.reset();
  }
  ~thread_channels() override { shutdown_all(); }  // made during the unwinding, say
  void shutdown_all() noexcept {
    for (const auto& weak : all) {
      if (const auto channel = weak.lock()) channel->shutdown();
    }
  }
};

std::shared_ptr<channel_state> channel_for(const settings& config, const std::string& host) {
  auto& channels = greenev::detail::thread_service_of<thread_channels>();
  if (!channels.current || channels.current->generation() != config.generation) {
    std::erase_if(channels.all, [](const auto& weak) { return weak.expired(); });
    // A retired channel lives on while its driver or callers hold it.
    channels.current = std::make_shared<channel_state>(config, host);
    channels.all.push_back(channels.current);
  }
  return channels.current;
}

// A channel for one lookup asked again: its queries cannot be hurt by
// others'. Costs a channel set-up (c-ares reads resolv.conf), so only the
// rare failures below take it.
std::shared_ptr<channel_state> isolated_channel(const channel_state& shared, const std::string& host,
                                                int rotation) {
  auto channel =
      std::make_shared<channel_state>(settings{shared.options(), shared.generation()}, host, true, rotation);
  auto& channels = greenev::detail::thread_service_of<thread_channels>();
  std::erase_if(channels.all, [](const auto& weak) { return weak.expired(); });
  channels.all.push_back(channel);
  return channel;
}

// Whether a failure on the shared channel may be another query's doing.
// c-ares 1.18 answers trouble on a server's connection (a TCP connection the
// server closed, a socket error) by closing all of that server's sockets and
// sending every query on it again, which costs each a try: a query that did
// nothing wrong may run out of tries ("connection refused") or time out
// early. A nameserver that refuses connections fails every query alike.
bool may_be_collateral(const outcome& o, const channel_state& channel, lookup_clock::time_point deadline) {
  const auto left = deadline - lookup_clock::now();
  if (o.status == ARES_ECONNREFUSED) return o.seen.refused == 0 && left > lookup_clock::duration::zero();
  if (o.status == ARES_ETIMEOUT) return left >= channel.options().timeout.duration();
  return false;
}

bool nameserver_said_no(int status) {
  return status == ARES_ESERVFAIL || status == ARES_EREFUSED || status == ARES_ENOTIMP;
}

struct lookup_result {
  outcome result;
  std::shared_ptr<channel_state> channel;  // the one that gave the result
};

// One lookup, within `timeout x tries` (per server, doubling) of when it was
// asked: on the thread's shared channel, then, if that failure may be another
// query's doing, once more on an isolated channel; a SERVFAIL, REFUSED or
// NOTIMP goes on to the next nameserver in turn. Switches.
template <class Submit>
lookup_result run_lookup(const settings& config, const std::string& host, int flags, Submit submit) {
  const lookup_clock::time_point asked = lookup_clock::now();
  std::shared_ptr<channel_state> channel = channel_for(config, host);
  const lookup_clock::time_point deadline = asked + channel->budget();
  outcome o = channel->run(flags, deadline, submit);
  for (int rotation = 0;;) {
    if (nameserver_said_no(o.status) && rotation + 1 < channel->server_count()) {
      ++rotation;
    } else if (channel->isolated() || !may_be_collateral(o, *channel, deadline)) {
      break;
    }
    if (lookup_clock::now() >= deadline) break;
    channel = isolated_channel(*channel, host, rotation);
    o = channel->run(flags, deadline, submit);
  }
  return {std::move(o), std::move(channel)};
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
  lookup_result l = run_lookup(config, host, flags, [&](ares_channel c, void* argument) {
    ares_addrinfo_hints hints{};
    hints.ai_family = family;
    hints.ai_flags = ares_flags(flags);
    ares_getaddrinfo(c, host.c_str(), nullptr, &hints, on_addrinfo, argument);
  });
  const outcome& o = l.result;
  if (o.status != ARES_SUCCESS) fail_status(o.status, o.seen, host, family, false, l.channel->options());
  return std::move(o.r->resolved);
}

host_entry ares_host_by_name(const std::string& name, const settings& config) {
  lookup_result l = run_lookup(config, name, 0, [&](ares_channel c, void* argument) {
    ares_gethostbyname(c, name.c_str(), AF_INET, on_host, argument);
  });
  const outcome& o = l.result;
  if (o.status != ARES_SUCCESS) fail_status(o.status, o.seen, name, AF_INET, false, l.channel->options());
  if (o.r->entry.addresses.empty())
    fail_status(ARES_ENODATA, o.seen, name, AF_INET, false, l.channel->options());
  return std::move(o.r->entry);
}

host_entry ares_host_by_address(const address& ip, const std::string& text, const settings& config) {
  lookup_result l = run_lookup(config, text, 0, [&](ares_channel c, void* argument) {
    if (ip.family() == AF_INET) {
      const auto& raw = reinterpret_cast<const sockaddr_in*>(ip.data())->sin_addr;
      ares_gethostbyaddr(c, &raw, sizeof raw, AF_INET, on_host, argument);
    } else {
      const auto& raw = reinterpret_cast<const sockaddr_in6*>(ip.data())->sin6_addr;
      ares_gethostbyaddr(c, &raw, sizeof raw, AF_INET6, on_host, argument);
    }
  });
  const outcome& o = l.result;
  if (o.status != ARES_SUCCESS) fail_status(o.status, o.seen, text, ip.family(), true, l.channel->options());
  return std::move(o.r->entry);
}

std::pair<std::string, std::string> ares_name_info(const address& a, int flags, const settings& config) {
  const std::string shown = a.to_string();
  lookup_result l = run_lookup(config, shown, 0, [&](ares_channel c, void* argument) {
    ares_getnameinfo(c, a.data(), a.size(), ares_name_flags(flags), on_name_info, argument);
  });
  const outcome& o = l.result;
  if (o.status != ARES_SUCCESS) fail_status(o.status, o.seen, shown, a.family(), true, l.channel->options());
  return {std::move(o.r->node), std::move(o.r->service)};
}

}  // namespace greenev::detail::dns
