// tests/support/dns_server.hpp — real DNS servers on loopback for resolver
// tests and benchmarks.
//
//   greenev::testing::dns_server dns("192.0.2.1 alpha.test\n2001:db8::1 alpha.test\n");
//   greenev::configure_resolver({.nameservers = {dns.nameserver()}});
//
// dns_server runs Debian's dnsmasq (package dnsmasq-base) in the foreground as
// a child process on 127.0.0.1 and a free port (UDP and TCP), answering only
// from the hosts-file text it is given: A, AAAA and the matching PTR records;
// every other name is NXDOMAIN (no upstream, no /etc/hosts, no resolv.conf).
// The constructor returns once the server answers; the destructor kills and
// reaps it. dnsmasq also dies with the thread that started it (Linux's
// parent-death signal), so a process that ends without running destructors
// (std::exit in a death-test child, a crash) leaves no dnsmasq behind: start
// it from the main thread or another thread that outlives it.
// silent_dns_server is "a nameserver that is down": a port that
// takes queries (UDP and TCP) and never answers, for timeout tests.
// These helpers block the calling thread (they are not greenev code).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace greenev::testing {

namespace detail {

// A socket bound to 127.0.0.1:port (0 = any free port); -1 if the bind fails.
inline int bound_socket(int type, std::uint16_t port) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in where{};
  where.sin_family = AF_INET;
  where.sin_port = htons(port);
  where.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&where), sizeof where) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline std::uint16_t local_port(int fd) {
  sockaddr_in where{};
  socklen_t length = sizeof where;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&where), &length);
  return ntohs(where.sin_port);
}

// A minimal DNS query (recursion desired, class IN) for `name` and `type`.
inline std::string dns_query(std::uint16_t id, const std::string& name, std::uint16_t type) {
  std::string packet{static_cast<char>(id >> 8), static_cast<char>(id & 0xff), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  std::istringstream labels(name);
  for (std::string label; std::getline(labels, label, '.');) {
    packet += static_cast<char>(label.size());
    packet += label;
  }
  packet += '\0';
  packet += {static_cast<char>(type >> 8), static_cast<char>(type & 0xff), 0, 1};
  return packet;
}

}  // namespace detail

/// A dnsmasq child process serving a hosts file. Not copyable.
class dns_server {
 public:
  /// The dnsmasq binary, or "" if it is not installed (tests skip then).
  static std::string binary() {
    for (const char* path :
         {"/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq", "/usr/local/sbin/dnsmasq"}) {
      if (::access(path, X_OK) == 0) return path;
    }
    return "";
  }

  /// Starts dnsmasq serving `hosts` (hosts-file lines: "IP NAME [ALIAS...]")
  /// and waits until it answers. Throws std::runtime_error (with dnsmasq's
  /// exit status, error output and log) if it is missing or does not come up
  /// within 30 seconds on any of five ports.
  explicit dns_server(const std::string& hosts) {
    const std::string program = binary();
    if (program.empty()) throw std::runtime_error("dnsmasq is not installed (Debian package dnsmasq-base)");
    char pattern[] = "/tmp/greenev-dns-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    directory_ = pattern;
    ::chmod(pattern, 0755);  // dnsmasq may drop privileges before reading the file
    std::ofstream(directory_ / "hosts") << hosts;
    std::string report;
    for (int attempt = 0; attempt < 5; ++attempt) {  // a free port can be taken between probe and bind
      std::string why;
      if (start(program, why)) return;
      stop();
      report += "attempt " + std::to_string(attempt + 1) + " on port " + std::to_string(port_) + ": " + why +
                "\n  error output: " + read(directory_ / "stderr") + "\n  log: " + log() + "\n";
    }
    std::filesystem::remove_all(directory_);
    throw std::runtime_error("dnsmasq did not start:\n" + report);
  }
  dns_server(const dns_server&) = delete;
  dns_server& operator=(const dns_server&) = delete;
  ~dns_server() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// "127.0.0.1:PORT", as resolver_options::nameservers takes it.
  [[nodiscard]] std::string nameserver() const { return "127.0.0.1:" + std::to_string(port_); }
  /// The dnsmasq process.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// The directory holding its hosts file and log (removed by the destructor).
  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return directory_; }
  /// dnsmasq's log so far (for failure messages).
  [[nodiscard]] std::string log() const { return read(directory_ / "log"); }

 private:
  static std::string read(const std::filesystem::path& path) {
    std::ifstream file(path);
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  }

  // Starts dnsmasq on a free port and waits until it answers; else says why.
  bool start(const std::string& program, std::string& why) {
    {
      // Probe a port free for both UDP and TCP, then hand it to dnsmasq.
      const int udp = detail::bound_socket(SOCK_DGRAM, 0);
      if (udp < 0) {
        why = "no free UDP port";
        return false;
      }
      port_ = detail::local_port(udp);
      const int tcp = detail::bound_socket(SOCK_STREAM, port_);
      ::close(udp);
      if (tcp < 0) {
        why = "the TCP port was taken";
        return false;
      }
      ::close(tcp);
    }
    std::vector<std::string> arguments = {
        program,
        "--keep-in-foreground",
        "--conf-file=/dev/null",  // no /etc/dnsmasq.conf
        "--no-resolv",            // no upstream servers ...
        "--no-hosts",             // ... and not this machine's /etc/hosts
        "--address=/#/",          // every name not in our file is NXDOMAIN, not REFUSED
        "--bogus-priv",           // private reverse lookups not in our file too
        "--addn-hosts=" + (directory_ / "hosts").string(),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--port=" + std::to_string(port_),
        "--pid-file=" + (directory_ / "pid").string(),
        "--log-facility=" + (directory_ / "log").string(),
    };
    if (::geteuid() == 0) {
      // As root dnsmasq would switch to nobody/dip; staying root avoids
      // depending on that user and group existing.
      arguments.emplace_back("--user=root");
      arguments.emplace_back("--group=root");
    }
    std::vector<char*> argv;
    for (std::string& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    const std::string errors = (directory_ / "stderr").string();
    const int error_fd = ::open(errors.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls until exec. The parent-death signal
      // kills dnsmasq if this thread ends without stop() (std::exit, a crash).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent is already gone
      if (error_fd >= 0) ::dup2(error_fd, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (error_fd >= 0) ::close(error_fd);
    if (pid_ < 0) {
      pid_ = -1;
      why = std::string("fork failed: ") + std::strerror(errno);
      return false;
    }
    return wait_until_answering(std::chrono::seconds(30), why);
  }

  // Until dnsmasq answers a query on its port, exits, or `limit` passes.
  bool wait_until_answering(std::chrono::seconds limit, std::string& why) {
    const int fd = detail::bound_socket(SOCK_DGRAM, 0);
    if (fd < 0) {
      why = "no socket for the readiness query";
      return false;
    }
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(port_);
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string query = detail::dns_query(0x4242, "ready.check", 1);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    bool ready = false;
    while (!ready && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // dnsmasq gave up (port taken, bad option)
        pid_ = -1;
        why = WIFEXITED(status) ? "dnsmasq exited with status " + std::to_string(WEXITSTATUS(status))
                                : "dnsmasq was killed by signal " + std::to_string(WTERMSIG(status));
        break;
      }
      (void)::sendto(fd, query.data(), query.size(), 0, reinterpret_cast<const sockaddr*>(&server),
                     sizeof server);
      pollfd entry{fd, POLLIN, 0};
      if (::poll(&entry, 1, 100) == 1) {
        char answer[512];
        const ssize_t got = ::recv(fd, answer, sizeof answer, 0);
        ready = got >= 2 && static_cast<unsigned char>(answer[0]) == 0x42 &&
                static_cast<unsigned char>(answer[1]) == 0x42;
      }
    }
    ::close(fd);
    if (!ready && why.empty()) why = "no answer within " + std::to_string(limit.count()) + " s";
    return ready;
  }

  void stop() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; ++i) {  // two seconds, then SIGKILL
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  std::filesystem::path directory_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

/// A nameserver that is down but not refusing: a UDP socket and a TCP
/// listener on one loopback port that never read or accept, so queries are
/// neither answered nor rejected (ICMP "port unreachable" would end a lookup
/// at once instead of timing it out). Not copyable.
class silent_dns_server {
 public:
  silent_dns_server() {
    for (int attempt = 0; attempt < 20 && tcp_ < 0; ++attempt) {
      udp_ = detail::bound_socket(SOCK_DGRAM, 0);
      if (udp_ < 0) continue;
      port_ = detail::local_port(udp_);
      tcp_ = detail::bound_socket(SOCK_STREAM, port_);
      if (tcp_ >= 0 && ::listen(tcp_, 16) == 0) break;
      if (tcp_ >= 0) ::close(tcp_);
      ::close(udp_);
      tcp_ = udp_ = -1;
    }
    if (tcp_ < 0) throw std::runtime_error("silent_dns_server: no free loopback port");
  }
  silent_dns_server(const silent_dns_server&) = delete;
  silent_dns_server& operator=(const silent_dns_server&) = delete;
  ~silent_dns_server() {
    ::close(udp_);
    ::close(tcp_);
  }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string nameserver() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int udp_ = -1;
  int tcp_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace greenev::testing
