// tests/support/hostile_dns_server.hpp — a DNS server on loopback that
// misbehaves on purpose, per query name, for the resolver's failure tests.
//
//   greenev::testing::hostile_dns_server dns({{"ok.test", dns_behaviour::answer},
//                                             {"gone.test", dns_behaviour::tcp_close}});
//   greenev::configure_resolver({.nameservers = {dns.nameserver()}});
//
// One UDP socket and one TCP listener on 127.0.0.1 and a free port, served
// by a std::thread of its own (plain blocking sockets and poll, no greenev),
// so a test's greenlets resolve against it from the test's thread. A name
// not in the table is NXDOMAIN. Replies echo the question as real servers do;
// an "answer" is A 192.0.2.53 and AAAA 2001:db8::53. The destructor stops
// the thread and closes every socket.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dns_server.hpp"

namespace greenev::testing {

/// How hostile_dns_server treats a query for one name (any record type).
enum class dns_behaviour {
  answer,     ///< the answer, over UDP and TCP
  truncated,  ///< UDP: an empty reply with the TC bit (retry over TCP); TCP: the answer
  huge,       ///< 200 A records (3 KiB): UDP truncated, as real servers do; TCP whole
  trickle,    ///< UDP: TC; TCP: the answer one byte every 5 ms
  tcp_close,  ///< UDP: TC; TCP: the connection is closed 100 ms after this query
              ///< arrives, and nothing more is read or answered on it
  malformed,  ///< a reply whose answer record is cut short after its type
  wrong_id,   ///< a reply under another transaction id, and nothing else
  silent,     ///< never answered
  servfail,   ///< rcode SERVFAIL
  refused,    ///< rcode REFUSED
  notimp,     ///< rcode NOTIMP
  formerr,    ///< rcode FORMERR
};

/// A misbehaving DNS server (see the top of this file). Not copyable.
class hostile_dns_server {
 public:
  /// Names (matched without regard to case) and how to treat them.
  explicit hostile_dns_server(std::map<std::string, dns_behaviour> names)
      : names_(lowered(std::move(names))) {
    for (int attempt = 0; attempt < 20 && listener_ < 0; ++attempt) {
      udp_ = detail::bound_socket(SOCK_DGRAM, 0);
      if (udp_ < 0) continue;
      port_ = detail::local_port(udp_);
      listener_ = detail::bound_socket(SOCK_STREAM, port_);
      if (listener_ >= 0 && ::listen(listener_, 64) == 0) break;
      if (listener_ >= 0) ::close(listener_);
      ::close(udp_);
      udp_ = listener_ = -1;
    }
    if (listener_ < 0) throw std::runtime_error("hostile_dns_server: no free loopback port");
    wake_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_ < 0) throw std::runtime_error("hostile_dns_server: eventfd failed");
    thread_ = std::thread([this] { serve(); });
  }
  hostile_dns_server(const hostile_dns_server&) = delete;
  hostile_dns_server& operator=(const hostile_dns_server&) = delete;
  ~hostile_dns_server() {
    const std::uint64_t one = 1;
    (void)::write(wake_, &one, sizeof one);
    thread_.join();
    for (const connection& c : connections_) ::close(c.fd);
    ::close(udp_);
    ::close(listener_);
    ::close(wake_);
  }

  /// "127.0.0.1:PORT", as resolver_options::nameservers takes it.
  [[nodiscard]] std::string nameserver() const { return "127.0.0.1:" + std::to_string(port_); }
  /// Queries received for `name` so far, over UDP and TCP.
  [[nodiscard]] int queries(const std::string& name) const {
    std::lock_guard lock(mutex_);
    const auto it = counts_.find(lower(name));
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  using clock = std::chrono::steady_clock;

  struct chunk {
    std::string bytes;
    clock::time_point not_before;
  };
  struct connection {
    int fd;
    std::string in;
    std::deque<chunk> out;
    std::optional<clock::time_point> close_at;  // set by a tcp_close query
  };

  static std::string lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
  }
  static std::map<std::string, dns_behaviour> lowered(std::map<std::string, dns_behaviour> names) {
    std::map<std::string, dns_behaviour> out;
    for (auto& [name, behaviour] : names) out.emplace(lower(name), behaviour);
    return out;
  }

  // The parts of a query a reply needs; nothing if it does not parse.
  struct query {
    std::string id_and_flags;  // the first four bytes
    std::string question;      // name, type and class, as sent
    std::string name;          // dotted, lower case
    std::uint16_t type = 0;
  };
  static std::optional<query> parse(const std::string& packet) {
    if (packet.size() < 12) return std::nullopt;
    query q;
    q.id_and_flags = packet.substr(0, 4);
    std::size_t at = 12;
    while (at < packet.size() && packet[at] != 0) {
      const auto length = static_cast<unsigned char>(packet[at]);
      if (length > 63 || at + 1 + length > packet.size()) return std::nullopt;
      if (!q.name.empty()) q.name += '.';
      q.name += packet.substr(at + 1, length);
      at += 1 + length;
    }
    if (at + 5 > packet.size()) return std::nullopt;
    q.type = static_cast<std::uint16_t>((static_cast<unsigned char>(packet[at + 1]) << 8) |
                                        static_cast<unsigned char>(packet[at + 2]));
    q.question = packet.substr(12, at + 5 - 12);
    q.name = lower(q.name);
    return q;
  }

  static void put16(std::string& out, unsigned value) {
    out += static_cast<char>((value >> 8) & 0xff);
    out += static_cast<char>(value & 0xff);
  }

  // A reply: header (QR, RD copied, RA, `rcode`, TC if `truncated`), the
  // question, and `answers` (each: type, then rdata).
  static std::string reply(const query& q, unsigned rcode, bool truncated,
                           const std::vector<std::pair<std::uint16_t, std::string>>& answers) {
    std::string out = q.id_and_flags.substr(0, 2);
    const auto rd = static_cast<unsigned>(static_cast<unsigned char>(q.id_and_flags[2]) & 0x01);
    out += static_cast<char>(0x80 | (truncated ? 0x02 : 0) | rd);
    out += static_cast<char>(0x80 | rcode);
    put16(out, 1);
    put16(out, static_cast<unsigned>(answers.size()));
    put16(out, 0);
    put16(out, 0);
    out += q.question;
    for (const auto& [type, data] : answers) {
      put16(out, 0xc00c);  // the name: a pointer to the question's
      put16(out, type);
      put16(out, 1);  // class IN
      put16(out, 0);
      put16(out, 60);  // TTL
      put16(out, static_cast<unsigned>(data.size()));
      out += data;
    }
    return out;
  }

  static std::vector<std::pair<std::uint16_t, std::string>> records(const query& q, int count) {
    std::vector<std::pair<std::uint16_t, std::string>> answers;
    if (q.type == 1) {
      for (int i = 0; i < count; ++i) {
        const std::string v4 =
            count == 1 ? std::string{'\xc0', '\x00', '\x02', '\x35'}  // 192.0.2.53
                       : std::string{10, 0, static_cast<char>(i / 256), static_cast<char>(i % 256)};
        answers.emplace_back(1, v4);
      }
    } else if (q.type == 28) {
      std::string v6(16, '\0');  // 2001:db8::53
      v6[0] = 0x20, v6[1] = 0x01, v6[2] = 0x0d, v6[3] = static_cast<char>(0xb8), v6[15] = 0x53;
      answers.emplace_back(28, v6);
    }
    return answers;
  }

  // The reply to `packet`, or nothing for silence. `tcp`: asked over TCP.
  std::optional<std::string> respond(const std::string& packet, bool tcp, dns_behaviour& behaviour) {
    const std::optional<query> q = parse(packet);
    if (!q) return std::nullopt;
    {
      std::lock_guard lock(mutex_);
      ++counts_[q->name];
    }
    const auto it = names_.find(q->name);
    if (it == names_.end()) {
      behaviour = dns_behaviour::answer;
      return reply(*q, 3, false, {});  // NXDOMAIN
    }
    behaviour = it->second;
    switch (behaviour) {
      case dns_behaviour::answer:
        return reply(*q, 0, false, records(*q, 1));
      case dns_behaviour::truncated:
      case dns_behaviour::trickle:
      case dns_behaviour::tcp_close:
        if (!tcp) return reply(*q, 0, true, {});
        return behaviour == dns_behaviour::tcp_close ? std::nullopt
                                                     : std::optional(reply(*q, 0, false, records(*q, 1)));
      case dns_behaviour::huge: {
        std::string whole = reply(*q, 0, false, records(*q, 200));
        if (!tcp && whole.size() > 512) return reply(*q, 0, true, {});
        return whole;
      }
      case dns_behaviour::malformed: {
        std::string cut = reply(*q, 0, false, {{1, "\x01\x02\x03\x04"}});
        cut.resize(12 + q->question.size() + 4);  // pointer and type, no class/TTL/data
        return cut;
      }
      case dns_behaviour::wrong_id: {
        std::string wrong = reply(*q, 0, false, records(*q, 1));
        wrong[0] = static_cast<char>(wrong[0] ^ 0x5a);
        return wrong;
      }
      case dns_behaviour::silent:
        return std::nullopt;
      case dns_behaviour::servfail:
        return reply(*q, 2, false, {});
      case dns_behaviour::refused:
        return reply(*q, 5, false, {});
      case dns_behaviour::notimp:
        return reply(*q, 4, false, {});
      case dns_behaviour::formerr:
        return reply(*q, 1, false, {});
    }
    return std::nullopt;
  }

  void on_udp() {
    char buffer[4096];
    sockaddr_in from{};
    socklen_t length = sizeof from;
    const ssize_t got =
        ::recvfrom(udp_, buffer, sizeof buffer, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &length);
    if (got <= 0) return;
    dns_behaviour behaviour{};
    if (const auto answer = respond(std::string(buffer, static_cast<std::size_t>(got)), false, behaviour)) {
      (void)::sendto(udp_, answer->data(), answer->size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from),
                     length);
    }
  }

  // Reads what `c` sent and queues replies; false once the peer closed.
  bool on_readable(connection& c) {
    char buffer[4096];
    const ssize_t got = ::recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (got == 0) return false;
    if (got < 0) return errno == EAGAIN || errno == EINTR;
    if (c.close_at) return true;  // doomed: read and ignored
    c.in.append(buffer, static_cast<std::size_t>(got));
    while (c.in.size() >= 2 && !c.close_at) {
      const std::size_t length = (static_cast<std::size_t>(static_cast<unsigned char>(c.in[0])) << 8) |
                                 static_cast<unsigned char>(c.in[1]);
      if (c.in.size() < 2 + length) break;
      const std::string packet = c.in.substr(2, length);
      c.in.erase(0, 2 + length);
      dns_behaviour behaviour{};
      const auto answer = respond(packet, true, behaviour);
      const auto now = clock::now();
      if (behaviour == dns_behaviour::tcp_close) {
        c.close_at = now + std::chrono::milliseconds(100);
        continue;
      }
      if (!answer) continue;
      std::string framed;
      put16(framed, static_cast<unsigned>(answer->size()));
      framed += *answer;
      if (behaviour == dns_behaviour::trickle) {
        for (std::size_t i = 0; i < framed.size(); ++i) {
          c.out.push_back({framed.substr(i, 1), now + std::chrono::milliseconds(5 * static_cast<int>(i))});
        }
      } else {
        c.out.push_back({framed, now});
      }
    }
    return true;
  }

  // Sends what is due; false if the connection broke.
  static bool flush(connection& c, clock::time_point now) {
    while (!c.out.empty() && c.out.front().not_before <= now) {
      chunk& next = c.out.front();
      const ssize_t sent = ::send(c.fd, next.bytes.data(), next.bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent < 0) return errno == EAGAIN || errno == EINTR;
      next.bytes.erase(0, static_cast<std::size_t>(sent));
      if (next.bytes.empty()) c.out.pop_front();
    }
    return true;
  }

  void serve() {
    for (;;) {
      const auto now = clock::now();
      // Connections that are done: closed by the peer, broken, or doomed.
      std::erase_if(connections_, [&](const connection& c) {
        if (c.close_at && *c.close_at <= now) {
          ::close(c.fd);
          return true;
        }
        return false;
      });
      std::vector<pollfd> fds = {{wake_, POLLIN, 0}, {udp_, POLLIN, 0}, {listener_, POLLIN, 0}};
      auto next = now + std::chrono::milliseconds(50);
      for (const connection& c : connections_) {
        short events = POLLIN;
        if (!c.out.empty()) {
          if (c.out.front().not_before <= now) events |= POLLOUT;
          next = std::min(next, c.out.front().not_before);
        }
        if (c.close_at) next = std::min(next, *c.close_at);
        fds.push_back({c.fd, events, 0});
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
      if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(wait, 0)) + 1) < 0) continue;
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) on_udp();
      if (fds[2].revents != 0) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) connections_.push_back({fd, {}, {}, std::nullopt});
      }
      const auto later = clock::now();
      std::vector<int> broken;
      for (std::size_t i = 3; i < fds.size(); ++i) {
        auto it = std::find_if(connections_.begin(), connections_.end(),
                               [&](const connection& c) { return c.fd == fds[i].fd; });
        if (it == connections_.end()) continue;
        bool alive = true;
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) alive = on_readable(*it);
        if (alive) alive = flush(*it, later);
        if (!alive) broken.push_back(it->fd);
      }
      std::erase_if(connections_, [&](const connection& c) {
        if (std::find(broken.begin(), broken.end(), c.fd) == broken.end()) return false;
        ::close(c.fd);
        return true;
      });
    }
  }

  std::map<std::string, dns_behaviour> names_;
  int udp_ = -1;
  int listener_ = -1;
  int wake_ = -1;
  std::uint16_t port_ = 0;
  std::vector<connection> connections_;  // the server thread's
  mutable std::mutex mutex_;
  std::map<std::string, int> counts_;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace greenev::testing
