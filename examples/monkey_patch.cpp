// Plain blocking POSIX code (socket client, sleep_for, getaddrinfo) made concurrent by patch_all().
//
// client() below knows nothing of greenev: it resolves "localhost" with getaddrinfo, connects,
// sends a line, sleeps with std::this_thread::sleep_for, and reads the echo, all with blocking
// libc calls. 100 greenlets run it twice: unpatched (one after another, since each blocks the
// thread) and after greenev::monkey::patch_all() (together). A greenev echo server on its own
// thread answers them. Prints how many clients slept at once in each run (1, then all of
// them: the proof, whatever the machine's speed) and `unpatched=X.XXs patched=Y.YYs`.
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>
#include <greenev/monkey.hpp>
#include <greenev/server.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>

namespace {

int asleep = 0;       // clients inside their sleep now
int most_asleep = 0;  // and at most, in this run

// Blocking POSIX code, as found in any legacy library. Returns true if the echo came back.
bool client(const char* port, int id) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo("localhost", port, &hints, &found) != 0) return false;
  const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  const bool connected = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  freeaddrinfo(found);
  const std::string line = "hello from client " + std::to_string(id) + "\n";
  bool ok = connected && send(fd, line.data(), line.size(), 0) == static_cast<ssize_t>(line.size());
  most_asleep = std::max(most_asleep, ++asleep);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // "some work"
  --asleep;
  char reply[64] = {};
  std::size_t got = 0;
  while (ok && got < line.size()) {
    const ssize_t n = recv(fd, reply + got, sizeof reply - got, 0);
    ok = n > 0;
    got += ok ? static_cast<std::size_t>(n) : 0;
  }
  if (fd >= 0) close(fd);
  return ok && line == std::string(reply, got);
}

double run_clients(const std::string& port, int clients, int& failures) {
  most_asleep = 0;
  const auto start = std::chrono::steady_clock::now();
  std::vector<greenev::basic_task> tasks;
  for (int i = 0; i < clients; ++i) {
    tasks.push_back(greenev::spawn([&, i] { failures += client(port.c_str(), i) ? 0 : 1; }));
  }
  greenev::joinall(tasks);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  // The echo server: greenev sockets on another thread (the unpatched run blocks this one).
  std::promise<std::pair<greenev::hub*, greenev::stream_server*>> started;
  greenev::basic_task stopper;  // made and joined on the server's thread
  std::thread server_thread([&] {
    greenev::stream_server server(
        greenev::address::parse("127.0.0.1", 0), [](greenev::socket& conn, const greenev::address&) {
          for (std::string data = conn.recv(4096); !data.empty(); data = conn.recv(4096)) conn.sendall(data);
        });
    server.start();
    started.set_value({&greenev::hub::current(), &server});
    server.serve_forever();
    stopper.join();
  });
  auto [hub, server] = started.get_future().get();
  const std::string port = std::to_string(server->local_address().port());

  int failures = 0;
  const double unpatched = run_clients(port, 100, failures);
  const int unpatched_at_once = most_asleep;
  greenev::monkey::patch_all();  // libc's blocking calls now park only their greenlet
  const double patched = run_clients(port, 100, failures);
  std::printf("clients=100 failures=%d\nasleep at once: unpatched=%d patched=%d\n", failures,
              unpatched_at_once, most_asleep);
  std::printf("unpatched=%.2fs patched=%.2fs\n", unpatched, patched);

  hub->run_callback_threadsafe([&] { stopper = greenev::spawn([&] { server->stop(1.0); }); });
  server_thread.join();
  return failures == 0 ? 0 : 1;
}
