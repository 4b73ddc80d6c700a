// sendall_baseline: greenev's sendall next to the plain blocking C loop (a large sendall
// over loopback; no goal, a comparison only). The sender sends one SIZE-byte buffer, either with the classic
// `while (sent < size) sent += send(...)` loop on a blocking socket (--sender blocking) or
// with greenev::socket::sendall on the same fd made non-blocking, waiting in the hub
// (--sender greenev); a second thread receives and counts the bytes. Prints MiB/s as
// `result sendall_{baseline|greenev}_{tcp|unix} = X MiB/s`.
//
//   sendall_baseline [--mib 512] [--transport tcp|unix] [--recv-kib 256] [--sender blocking|greenev]
//
// tcp: a 127.0.0.1 connection through a listener on port 0; unix: a socketpair. The buffer
// is filled before the clock starts, so page faults are not measured. The greenev figure is
// meant to use the same receiver thread, with only the sending side replaced.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <greenev/socket.hpp>

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "sendall_baseline: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr,
               "sendall_baseline: %s\nusage: sendall_baseline [--mib 512] [--transport tcp|unix] "
               "[--recv-kib 256] [--sender blocking|greenev]\n",
               message.c_str());
  std::exit(2);
}

std::size_t parse_size(std::string_view name, std::string_view text) {
  std::size_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value == 0 || value > (1u << 20))
    usage_error(std::string(name) + " needs a positive number, not '" + std::string(text) + "'");
  return value;
}

// Returns {sending end, receiving end}.
std::pair<int, int> tcp_pair() {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      listen(listener, 1) != 0 || getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    fail("listen on 127.0.0.1");
  int sender = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sender < 0 || connect(sender, reinterpret_cast<sockaddr*>(&address), length) != 0) fail("connect");
  int receiver = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (receiver < 0) fail("accept");
  close(listener);
  return {sender, receiver};
}

std::pair<int, int> unix_pair() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) fail("socketpair");
  return {fds[0], fds[1]};
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t mib = 512;
  std::size_t recv_kib = 256;
  std::string transport = "tcp";
  std::string sender_kind = "blocking";
  for (int i = 1; i < argc; ++i) {
    std::string_view name = argv[i];
    if (name == "-h" || name == "--help") usage_error("blocking sendall throughput over loopback");
    if (i + 1 >= argc) usage_error("unknown argument or missing value: " + std::string(name));
    std::string_view value = argv[++i];
    if (name == "--mib") {
      mib = parse_size(name, value);
    } else if (name == "--recv-kib") {
      recv_kib = parse_size(name, value);
    } else if (name == "--transport" && (value == "tcp" || value == "unix")) {
      transport = value;
    } else if (name == "--sender" && (value == "blocking" || value == "greenev")) {
      sender_kind = value;
    } else {
      usage_error("unknown argument: " + std::string(name) + " " + std::string(value));
    }
  }

  const std::size_t total = mib << 20;
  std::vector<char> data(total);
  for (std::size_t i = 0; i < total; ++i) data[i] = static_cast<char>(i * 131 % 251);
  auto [sender, receiver] = transport == "tcp" ? tcp_pair() : unix_pair();

  std::size_t received = 0;
  std::thread reader([&received, receiver, recv_kib] {
    std::vector<char> buffer(recv_kib << 10);
    for (;;) {
      ssize_t n = recv(receiver, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("recv");
      if (n == 0) return;
      received += static_cast<std::size_t>(n);
    }
  });

  auto start = std::chrono::steady_clock::now();
  if (sender_kind == "greenev") {
    greenev::socket socket = greenev::socket::adopt(sender);
    socket.sendall({data.data(), total});
    socket.shutdown(SHUT_WR);
    sender = socket.release();
  } else {
    std::size_t sent = 0;
    while (sent < total) {
      ssize_t n = send(sender, data.data() + sent, total - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("send");
      sent += static_cast<std::size_t>(n);
    }
    shutdown(sender, SHUT_WR);
  }
  reader.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  close(sender);
  close(receiver);

  if (received != total) {
    std::fprintf(stderr, "sendall_baseline: received %zu of %zu bytes\n", received, total);
    return 1;
  }
  const char* label = sender_kind == "greenev" ? "greenev" : "baseline";
  std::printf("sendall_%s: %zu MiB over %s in %.3f s\n", label, mib, transport.c_str(), seconds);
  std::printf("result sendall_%s_%s = %.1f MiB/s\n", label, transport.c_str(),
              static_cast<double>(mib) / seconds);
  return 0;
}
