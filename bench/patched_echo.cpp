// The interposition echo benchmark's server (bench/patched_echo_bench.sh): one greenlet per
// connection echoing until the client closes, written two ways in one program so that only
// the IO layer differs:
//   --mode posix    plain blocking POSIX calls (socket, accept, read, write) under patch_all()
//   --mode greenev  greenev::stream_server and greenev::socket (recv_into/sendall)
// Prints "listening on 127.0.0.1:PORT"; exits 0 on SIGTERM or SIGINT.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <greenev/greenev.hpp>

namespace {

// Code that knows nothing of greenev: a blocking echo loop.
void posix_echo(int fd) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    if (write(fd, buffer, static_cast<std::size_t>(n)) != n) break;
  }
  close(fd);
}

[[noreturn]] void posix_server(int port) {
  greenev::monkey::patch_all();
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  local.sin_port = htons(static_cast<std::uint16_t>(port));
  socklen_t length = sizeof local;
  if (bind(listener, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 || listen(listener, 1024) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    std::perror("patched_echo: listen");
    std::exit(1);
  }
  std::printf("listening on 127.0.0.1:%d\n", ntohs(local.sin_port));
  std::fflush(stdout);
  for (;;) {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    greenev::spawn(posix_echo, fd);
  }
}

[[noreturn]] void greenev_server(int port) {
  greenev::stream_server server(greenev::address::parse("127.0.0.1", static_cast<std::uint16_t>(port)),
                                [](greenev::socket& conn, const greenev::address&) {
                                  char buffer[65536];
                                  while (const std::size_t n = conn.recv_into(buffer))
                                    conn.sendall({buffer, n});
                                });
  server.start();
  std::printf("listening on 127.0.0.1:%d\n", server.local_address().port());
  std::fflush(stdout);
  server.serve_forever();
  std::exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view mode;
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--mode") == 0) mode = argv[i + 1];
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
  }
  if (mode != "posix" && mode != "greenev") {
    std::fprintf(stderr, "usage: patched_echo --mode posix|greenev [--port P]\n");
    return 2;
  }
  // A benchmark server: stop at once, without unwinding the connections.
  const auto quit = [] {
    std::fflush(stdout);
    std::_Exit(0);
  };
  greenev::signal_handler term(SIGTERM, quit);
  greenev::signal_handler interrupt(SIGINT, quit);
  if (mode == "posix") posix_server(port);
  greenev_server(port);
}
