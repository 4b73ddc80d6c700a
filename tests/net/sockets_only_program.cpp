// A program that uses greenev's sockets and never patches: linked against
// greenev::net alone, it must carry no libc interposer (no_libc_interposer.sh
// checks its symbols and where its libc calls bind). An echo over loopback, so
// that connect, accept, send, recv and close all run.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <greenev/address.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>

int main() {
  greenev::socket listener(AF_INET, SOCK_STREAM);
  listener.bind(greenev::address::parse("127.0.0.1", 0));
  listener.listen();
  const std::uint16_t port = listener.local_address().port();
  auto server = greenev::spawn([&listener] {
    auto [peer, from] = listener.accept();
    peer.sendall(peer.recv(64));
  });
  greenev::socket client = greenev::create_connection("127.0.0.1", port, 5.0);
  client.sendall("echo");
  const std::string reply = client.recv(64);
  server.get();
  const std::string line = "sockets_only_program: " + reply + "\n";
  // Plain libc write, which must reach libc itself.
  return ::write(STDOUT_FILENO, line.data(), line.size()) == static_cast<ssize_t>(line.size()) ? 0 : 1;
}
