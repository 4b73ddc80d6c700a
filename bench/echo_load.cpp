// echo_load: a closed-loop echo load generator on raw epoll, independent of greenev, so the
// same client measures greenev's echo_server, the raw libev baseline and gevent
// (bench/echo_bench.sh).
//
//   echo_load --port P [--host 127.0.0.1] [--connections 100] [--size 64] [--seconds 3]
//             [--warmup 1] [--threads 1] [--server-pid PID]
//
// Each connection sends SIZE bytes, waits for the whole echo, checks it byte for byte and
// starts the next round with a different payload (so a stale or repeated echo fails).
// Rounds finished during the warmup are not counted. With --server-pid, the server's CPU
// time (/proc/PID/stat utime+stime, all its threads) over the measured interval is divided
// by the round trips. Loopback addresses only. Lines starting "result " are for the script.
// Exits 1 on any mismatch or connection error, or if no round trip completed; 2 on bad usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  std::string host = "127.0.0.1";
  int port = -1;
  int connections = 100;
  int size = 64;
  double seconds = 3;
  double warmup = 1;
  int threads = 1;
  int server_pid = 0;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr,
               "echo_load: %s\n"
               "usage: echo_load --port P [--host 127.0.0.1] [--connections 100] [--size 64]\n"
               "                 [--seconds 3] [--warmup 1] [--threads 1] [--server-pid PID]\n",
               message.c_str());
  std::exit(2);
}

template <typename number>
number parse_number(std::string_view name, std::string_view text, number low, number high) {
  number value{};
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
    usage_error(std::string(name) + " needs a number in [" + std::to_string(low) + ", " +
                std::to_string(high) + "], not '" + std::string(text) + "'");
  }
  return value;
}

options parse_options(int argc, char** argv) {
  options parsed;
  for (int i = 1; i < argc; ++i) {
    std::string_view name = argv[i];
    if (name == "-h" || name == "--help") usage_error("a closed-loop echo load generator");
    if (i + 1 >= argc) usage_error("unknown argument or missing value: " + std::string(name));
    std::string_view value = argv[++i];
    if (name == "--host") {
      parsed.host = value;
    } else if (name == "--port") {
      parsed.port = parse_number(name, value, 1, 65535);
    } else if (name == "--connections") {
      parsed.connections = parse_number(name, value, 1, 1'000'000);
    } else if (name == "--size") {
      parsed.size = parse_number(name, value, 1, 64 << 20);
    } else if (name == "--seconds") {
      parsed.seconds = parse_number(name, value, 0.01, 86400.0);
    } else if (name == "--warmup") {
      parsed.warmup = parse_number(name, value, 0.0, 86400.0);
    } else if (name == "--threads") {
      parsed.threads = parse_number(name, value, 1, 1024);
    } else if (name == "--server-pid") {
      parsed.server_pid = parse_number(name, value, 1, 1 << 30);
    } else {
      usage_error("unknown argument: " + std::string(name));
    }
  }
  if (parsed.port < 0) usage_error("--port is required");
  parsed.threads = std::min(parsed.threads, parsed.connections);
  return parsed;
}

// Loopback only: this tool floods its peer, which is fine for our own server on this host
// and not for anyone else's.
sockaddr_storage loopback_address(const std::string& host, int port, socklen_t& length) {
  sockaddr_storage address{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
  std::string numeric = host == "localhost" ? "127.0.0.1" : host;
  if (inet_pton(AF_INET, numeric.c_str(), &v4->sin_addr) == 1) {
    if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127) usage_error("not a loopback address: " + host);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(port));
    length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, numeric.c_str(), &v6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) usage_error("not a loopback address: " + host);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(port));
    length = sizeof(sockaddr_in6);
  } else {
    usage_error("--host needs a numeric loopback address or localhost, not '" + host + "'");
  }
  return address;
}

// utime + stime of every thread of the process, in microseconds; nullopt if it is gone.
std::optional<double> process_cpu_us(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(file, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  std::string skipped;
  for (int field = 3; field < 14; ++field) fields >> skipped;
  unsigned long long user_ticks = 0;
  unsigned long long system_ticks = 0;
  if (!(fields >> user_ticks >> system_ticks)) return std::nullopt;
  return static_cast<double>(user_ticks + system_ticks) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double own_cpu_us() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto us = [](const timeval& time) {
    return static_cast<double>(time.tv_sec) * 1e6 + static_cast<double>(time.tv_usec);
  };
  return us(usage.ru_utime) + us(usage.ru_stime);
}

// Deterministic bytes for (connection, round): every round's payload differs from the last,
// so an echo of an earlier round, or of another connection's data, never compares equal.
void fill_payload(std::vector<unsigned char>& payload, std::uint64_t connection, std::uint64_t round) {
  std::uint64_t state = (connection << 40) ^ (round * 0x9e3779b97f4a7c15ULL);
  for (std::size_t offset = 0; offset < payload.size(); offset += 8) {
    state += 0x9e3779b97f4a7c15ULL;  // splitmix64
    std::uint64_t mixed = state;
    mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9ULL;
    mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebULL;
    mixed ^= mixed >> 31;
    std::memcpy(payload.data() + offset, &mixed, std::min<std::size_t>(8, payload.size() - offset));
  }
}

struct connection {
  int fd = -1;
  std::uint64_t id = 0;
  std::uint64_t round = 0;
  std::size_t sent = 0;
  std::size_t received = 0;
  bool waiting_writable = false;
  std::vector<unsigned char> expected;
  std::vector<unsigned char> echoed;
};

// One per thread, each on its own cache line: the main thread reads them while workers count.
struct alignas(64) worker_state {
  std::vector<connection> connections;
  std::atomic<std::uint64_t> rounds{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> running{true};
};

std::atomic<bool> stop_requested{false};
std::atomic<int> errors_printed{0};

class worker {
 public:
  explicit worker(worker_state& state) : state_(state) {}

  void run() {
    active_ = static_cast<int>(state_.connections.size());
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) {
      fail_all("epoll_create1");
      state_.running.store(false);
      return;
    }
    for (std::size_t index = 0; index < state_.connections.size(); ++index) {
      epoll_event event{.events = EPOLLIN, .data = {.u64 = index}};
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, state_.connections[index].fd, &event) != 0) {
        fail(state_.connections[index], std::string("epoll_ctl: ") + std::strerror(errno));
      }
    }
    for (auto& c : state_.connections)
      if (c.fd >= 0) start_round(c);
    std::vector<epoll_event> events(256);
    while (active_ > 0 && !stop_requested.load(std::memory_order_relaxed)) {
      // The timeout only bounds how late a stop request is seen.
      int ready = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 50);
      if (ready < 0 && errno != EINTR) {
        fail_all("epoll_wait");
        break;
      }
      for (int i = 0; i < ready; ++i) {
        connection& c = state_.connections[events[i].data.u64];
        if (c.fd >= 0 && (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) flush(c);
        if (c.fd >= 0 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) receive(c);
      }
    }
    drain();
    close(epoll_);
    state_.running.store(false);
  }

 private:
  void start_round(connection& c) {
    ++c.round;
    fill_payload(c.expected, c.id, c.round);
    c.sent = 0;
    c.received = 0;
    flush(c);
  }

  void flush(connection& c) {
    while (c.sent < c.expected.size()) {
      ssize_t n = send(c.fd, c.expected.data() + c.sent, c.expected.size() - c.sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0) return fail(c, std::string("send: ") + std::strerror(errno));
      c.sent += static_cast<std::size_t>(n);
    }
    // Ask for EPOLLOUT only while a partial write is pending: a 64-byte ping-pong never does.
    bool want_writable = c.sent < c.expected.size();
    if (want_writable != c.waiting_writable) {
      epoll_event event{.events = EPOLLIN | (want_writable ? EPOLLOUT : 0u), .data = {.u64 = index_of(c)}};
      if (epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &event) != 0)
        return fail(c, std::string("epoll_ctl: ") + std::strerror(errno));
      c.waiting_writable = want_writable;
    }
  }

  void receive(connection& c) {
    // One recv per readiness: level-triggered epoll reports the rest next time.
    ssize_t n = recv(c.fd, c.echoed.data() + c.received, c.echoed.size() - c.received, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0) return fail(c, std::string("recv: ") + std::strerror(errno));
    if (n == 0) return fail(c, "the server closed the connection");
    c.received += static_cast<std::size_t>(n);
    if (c.received > c.sent) return fail(c, "the server echoed bytes that were not sent yet");
    if (c.received < c.expected.size()) return;
    auto [mine, theirs] = std::mismatch(c.expected.begin(), c.expected.end(), c.echoed.begin());
    if (mine != c.expected.end()) {
      return fail(c, "echo mismatch in round " + std::to_string(c.round) + " at byte " +
                         std::to_string(mine - c.expected.begin()) + ": sent " + std::to_string(*mine) +
                         ", got " + std::to_string(*theirs));
    }
    // One writer per counter: a plain store, no read-modify-write.
    state_.rounds.store(state_.rounds.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    start_round(c);
  }

  // Close politely: half-close, then read until the server closes too (or a deadline), so
  // servers see an ordinary EOF rather than a reset from unread data in flight.
  void drain() {
    std::vector<unsigned char> sink(65536);
    for (auto& c : state_.connections)
      if (c.fd >= 0) shutdown(c.fd, SHUT_WR);
    auto deadline = clock_type::now() + std::chrono::seconds(2);
    std::vector<epoll_event> events(256);
    while (active_ > 0 && clock_type::now() < deadline) {
      int ready = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 50);
      for (int i = 0; i < ready; ++i) {
        connection& c = state_.connections[events[i].data.u64];
        if (c.fd < 0) continue;
        ssize_t n = recv(c.fd, sink.data(), sink.size(), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) close_connection(c);
      }
    }
    for (auto& c : state_.connections)
      if (c.fd >= 0) close_connection(c);
  }

  void fail(connection& c, const std::string& what) {
    state_.errors.fetch_add(1, std::memory_order_relaxed);
    if (errors_printed.fetch_add(1) < 10)
      std::fprintf(stderr, "echo_load: connection %llu: %s\n", static_cast<unsigned long long>(c.id),
                   what.c_str());
    close_connection(c);
  }

  void fail_all(const char* call) {
    std::string what = std::string(call) + ": " + std::strerror(errno);
    for (auto& c : state_.connections)
      if (c.fd >= 0) fail(c, what);
  }

  void close_connection(connection& c) {
    close(c.fd);
    c.fd = -1;
    --active_;
  }

  std::uint64_t index_of(const connection& c) const {
    return static_cast<std::uint64_t>(&c - state_.connections.data());
  }

  worker_state& state_;
  int epoll_ = -1;
  int active_ = 0;
};

int connect_one(const sockaddr_storage& address, socklen_t length) {
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  // A full accept queue would otherwise stall connect() for the kernel's SYN retries.
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  int one = 1;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

void raise_fd_limit(int connections) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  rlim_t needed = static_cast<rlim_t>(connections) + 64;
  if (limit.rlim_cur < needed) {
    limit.rlim_cur = std::min(needed, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

struct snapshot {
  clock_type::time_point time;
  std::uint64_t rounds = 0;
  double client_cpu_us = 0;
  std::optional<double> server_cpu_us;
};

snapshot take_snapshot(const std::vector<worker_state>& workers, int server_pid) {
  snapshot taken{.time = clock_type::now()};
  for (const auto& state : workers) taken.rounds += state.rounds.load(std::memory_order_relaxed);
  taken.client_cpu_us = own_cpu_us();
  if (server_pid != 0) taken.server_cpu_us = process_cpu_us(server_pid);
  return taken;
}

// Sleeps until the deadline, or until every worker has stopped (all its connections failed).
void sleep_until(clock_type::time_point deadline, const std::vector<worker_state>& workers) {
  while (clock_type::now() < deadline) {
    if (std::none_of(workers.begin(), workers.end(),
                     [](const worker_state& state) { return state.running.load(); }))
      return;
    std::this_thread::sleep_for(
        std::min<clock_type::duration>(deadline - clock_type::now(), std::chrono::milliseconds(20)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  options opts = parse_options(argc, argv);
  socklen_t address_length = 0;
  sockaddr_storage address = loopback_address(opts.host, opts.port, address_length);
  if (opts.server_pid != 0 && !process_cpu_us(opts.server_pid))
    usage_error("cannot read /proc/" + std::to_string(opts.server_pid) + "/stat");
  raise_fd_limit(opts.connections);

  std::vector<worker_state> workers(static_cast<std::size_t>(opts.threads));
  for (int id = 0; id < opts.connections; ++id) {
    int fd = connect_one(address, address_length);
    if (fd < 0) {
      std::fprintf(stderr, "echo_load: connection %d to %s:%d: %s\n", id, opts.host.c_str(), opts.port,
                   std::strerror(errno));
      for (auto& state : workers)
        for (auto& c : state.connections) close(c.fd);
      return 1;
    }
    auto size = static_cast<std::size_t>(opts.size);
    workers[static_cast<std::size_t>(id % opts.threads)].connections.push_back(
        {.fd = fd,
         .id = static_cast<std::uint64_t>(id),
         .expected = std::vector<unsigned char>(size),
         .echoed = std::vector<unsigned char>(size)});
  }

  auto start = clock_type::now();
  std::vector<std::thread> threads;
  for (auto& state : workers) threads.emplace_back([&state] { worker(state).run(); });
  sleep_until(
      start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opts.warmup)),
      workers);
  snapshot first = take_snapshot(workers, opts.server_pid);
  sleep_until(first.time + std::chrono::duration_cast<clock_type::duration>(
                               std::chrono::duration<double>(opts.seconds)),
              workers);
  snapshot last = take_snapshot(workers, opts.server_pid);
  stop_requested.store(true);
  for (auto& thread : threads) thread.join();

  std::uint64_t errors = 0;
  for (const auto& state : workers) errors += state.errors.load();
  double elapsed = std::chrono::duration<double>(last.time - first.time).count();
  std::uint64_t rounds = last.rounds - first.rounds;
  std::printf("echo_load: %s:%d, %d connections x %d B, %d thread(s), warmup %g s, measured %.3f s\n",
              opts.host.c_str(), opts.port, opts.connections, opts.size, opts.threads, opts.warmup, elapsed);
  std::printf("result rps = %.1f round_trips/s\n", elapsed > 0 ? static_cast<double>(rounds) / elapsed : 0.0);
  std::printf("result rounds = %llu round_trips\n", static_cast<unsigned long long>(rounds));
  std::printf("result errors = %llu errors\n", static_cast<unsigned long long>(errors));
  if (rounds > 0) {
    std::printf("result client_cpu_per_round_trip = %.3f us\n",
                (last.client_cpu_us - first.client_cpu_us) / static_cast<double>(rounds));
    if (first.server_cpu_us && last.server_cpu_us) {
      std::printf("result server_cpu_per_round_trip = %.3f us\n",
                  (*last.server_cpu_us - *first.server_cpu_us) / static_cast<double>(rounds));
    } else if (opts.server_pid != 0) {
      std::fprintf(stderr, "echo_load: server %d exited during the run\n", opts.server_pid);
      return 1;
    }
  }
  if (errors > 0) return 1;
  if (rounds == 0) {
    std::fprintf(stderr, "echo_load: no round trip completed in the measured interval\n");
    return 1;
  }
  return 0;
}
