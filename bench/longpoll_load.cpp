// The long-poll load for bench/web_bench.sh: N connections each hold a
// GET /cart/status on examples/longpoll_cart, then one POST /cart adds the item
// and every held request must answer {"inventoryCount":"9"}. Prints the release
// latency (from the POST's send to each answer: p50, p99, max) and, given the
// server's pid, its resident memory per held connection. Every connection stays open
// until all answers are in, as a browser keeps its keep-alive connection for the next
// poll: closing them during the release would measure the client's closes, not the
// server's release.
//
//   longpoll_load --port P --connections 10000 [--server-pid PID]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>

#include "../examples/command_line.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

long resident_kib(long pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Reads one whole response (headers and a Content-Length body).
std::string read_response(greenev::socket& s) {
  std::string data;
  char buffer[1024];
  for (;;) {
    const std::size_t header_end = data.find("\r\n\r\n");
    if (header_end != std::string::npos) {
      const std::size_t at = data.find("Content-Length: ");
      const std::size_t length = at == std::string::npos ? 0 : std::stoul(data.substr(at + 16));
      if (data.size() >= header_end + 4 + length) return data;
    }
    const std::size_t n = s.recv_into(buffer);
    if (n == 0) return data;
    data.append(buffer, n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  long port = 0;
  long connections = 10000;
  long server_pid = 0;
  examples::command_line options("longpoll_load",
                                 "usage: longpoll_load --port P [--connections N] [--server-pid PID]\n");
  options.integer("--port", port, 1, 65535);
  options.integer("--connections", connections, 1, 1000000);
  options.integer("--server-pid", server_pid, 1, 1L << 30);
  if (const auto status = options.parse(argc, argv)) return *status;

  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &files);

  const auto server = greenev::address::parse("127.0.0.1", static_cast<std::uint16_t>(port));
  const long idle_kib = server_pid > 0 ? resident_kib(server_pid) : -1;
  std::vector<double> latencies;
  long wrong = 0;
  long failed = 0;
  long held = 0;
  clock_type::time_point released{};
  greenev::event all_answered;
  std::vector<greenev::task<void>> pollers;
  for (long i = 0; i < connections; ++i) {
    pollers.push_back(greenev::spawn([&] {
      try {
        greenev::socket s(AF_INET, SOCK_STREAM);
        s.set_timeout(60.0);
        s.connect(server);
        s.sendall("GET /cart/status HTTP/1.1\r\nHost: bench\r\n\r\n");
        ++held;
        const std::string answer = read_response(s);
        latencies.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - released).count());
        if (answer.find("{\"inventoryCount\":\"9\"}") == std::string::npos) ++wrong;
        if (static_cast<long>(latencies.size()) + failed == connections) all_answered.set();
        all_answered.wait();
      } catch (const std::exception&) {
        ++failed;
        if (static_cast<long>(latencies.size()) + failed == connections) all_answered.set();
      }
    }));
  }
  while (held + failed < connections) greenev::sleep(0.01);
  greenev::sleep(1.0);  // the last requests reach their handlers
  const long held_kib = server_pid > 0 ? resident_kib(server_pid) : -1;

  greenev::socket poster(AF_INET, SOCK_STREAM);
  poster.connect(server);
  released = clock_type::now();
  poster.sendall(
      "POST /cart HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: 23\r\n\r\naction=add&session=load");
  (void)read_response(poster);
  for (auto& poller : pollers) poller.join();

  std::sort(latencies.begin(), latencies.end());
  const auto at = [&](double q) {
    return latencies.empty()
               ? 0.0
               : latencies[std::min(latencies.size() - 1,
                                    static_cast<std::size_t>(q * static_cast<double>(latencies.size())))];
  };
  std::printf("result held = %ld connections\n", held);
  std::printf("result failed = %ld\nresult wrong = %ld\n", failed, wrong);
  std::printf("result release_p50 = %.1f ms\nresult release_p99 = %.1f ms\nresult release_max = %.1f ms\n",
              at(0.50), at(0.99), latencies.empty() ? 0.0 : latencies.back());
  if (server_pid > 0) {
    std::printf("result server_rss_per_connection = %.2f KiB\n",
                static_cast<double>(held_kib - idle_kib) / static_cast<double>(std::max(held, 1L)));
  }
  return failed == 0 && wrong == 0 ? 0 : 1;
}
