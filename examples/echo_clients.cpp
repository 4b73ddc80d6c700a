// The seed's 100 concurrent echo clients, as greenlets instead of threads.
//
// The python original starts 100 threads, each sending "hello N" and printing the
// reply forever. Here each of --clients greenlets sends --messages numbered messages,
// checks that every echo matches byte for byte, and a summary line ends the run:
//   clients=100 messages=100 round_trips=10000 errors=0 time=0.12s rate=83000/s
// The exit status is 1 if any echo was wrong or any connection failed.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/socket.hpp>
#include <greenev/task.hpp>

#include "command_line.hpp"

namespace {

struct totals {
  long round_trips = 0;
  long errors = 0;
};

void sock_conn(int id, const std::string& host, std::uint16_t port, long messages, totals& sum) {
  try {
    greenev::socket client = greenev::create_connection(host, port, 10.0);
    for (long count = 0; count < messages; ++count) {
      const std::string message = "hello " + std::to_string(id) + "/" + std::to_string(count);
      client.sendall(message);
      std::string echo;
      while (echo.size() < message.size()) {
        const std::string part = client.recv(message.size() - echo.size());
        if (part.empty()) throw std::runtime_error("the server closed the connection");
        echo += part;
      }
      if (echo != message) throw std::runtime_error("sent '" + message + "', got back '" + echo + "'");
      ++sum.round_trips;
    }
  } catch (const std::exception& error) {
    std::cerr << "client " << id << ": " << error.what() << "\n";
    ++sum.errors;
  }
}

constexpr std::string_view usage_text =
    "usage: echo_clients [--host HOST] [--port PORT] [--clients N] [--messages M]\n"
    "  --host HOST      numeric address of the echo server (default 127.0.0.1)\n"
    "  --port PORT      1..65535 (default 8001)\n"
    "  --clients N      concurrent connections, 1..10000 (default 100)\n"
    "  --messages M     round trips per connection, 1..1000000 (default 100)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 8001, clients = 100, messages = 100;
  examples::command_line options("echo_clients", std::string(usage_text));
  options.text("--host", host);
  options.integer("--port", port, 1, 65535);
  options.integer("--clients", clients, 1, 10000);
  options.integer("--messages", messages, 1, 1000000);
  if (const auto status = options.parse(argc, argv)) return *status;
  totals sum;
  const auto start = std::chrono::steady_clock::now();
  std::vector<greenev::basic_task> tasks;
  for (int id = 0; id < clients; ++id) {
    tasks.push_back(
        greenev::spawn(sock_conn, id, host, static_cast<std::uint16_t>(port), messages, std::ref(sum)));
  }
  greenev::joinall(tasks);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("clients=%ld messages=%ld round_trips=%ld errors=%ld time=%.2fs rate=%.0f/s\n", clients,
              messages, sum.round_trips, sum.errors, seconds, static_cast<double>(sum.round_trips) / seconds);
  return sum.errors == 0 && sum.round_trips == clients * messages ? 0 : 1;
}
