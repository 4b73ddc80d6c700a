// One greenlet per connection: the seed's gevent echo server, on greenev::stream_server.
//
// The python original accepts in a loop and spawns handle_request(conn) for each
// client, echoing until the client closes. Here stream_server does the accepting;
// SIGINT or SIGTERM stops it gracefully (exit status 0). --workers N serves on N
// threads, each with its own hub, through a SO_REUSEPORT listener; --processes N
// forks N children that serve the port while this process supervises them
// (restarting one that crashes) and passes SIGINT/SIGTERM on to them.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include <greenev/server.hpp>
#include <greenev/signal.hpp>

#include "command_line.hpp"

namespace {

void handle_request(greenev::socket& conn, const greenev::address& /*peer*/) {
  char data[4096];
  while (const std::size_t n = conn.recv_into(data)) conn.sendall({data, n});  // 0: the client closed
}

constexpr std::string_view usage_text =
    "usage: echo_server [--host HOST] [--port PORT] [--workers N] [--processes N]\n"
    "  --host HOST     numeric address to listen on (default 127.0.0.1)\n"
    "  --port PORT     0..65535, 0 picks a free port (default 8001)\n"
    "  --workers N     threads serving the port, 1..64 (default 1)\n"
    "  --processes N   forked processes serving the port, 1..64 (default 1: this one)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 8001;
  long workers = 1;
  long processes = 1;
  examples::command_line options("echo_server", std::string(usage_text));
  options.text("--host", host);
  options.integer("--port", port, 0, 65535);
  options.integer("--workers", workers, 1, 64);
  options.integer("--processes", processes, 1, 64);
  if (const auto status = options.parse(argc, argv)) return *status;
  try {
    greenev::stream_server server(
        greenev::address::parse(host, static_cast<std::uint16_t>(port)), handle_request,
        {.workers = static_cast<unsigned>(workers), .processes = static_cast<unsigned>(processes)});
    server.start();  // with --processes, the children serve inside it and never return
    std::printf("listening on %s\n", server.local_address().to_string().c_str());
    std::fflush(stdout);
    greenev::signal_handler on_int(SIGINT, [&] { server.stop(); });
    greenev::signal_handler on_term(SIGTERM, [&] { server.stop(); });
    server.serve_forever();
  } catch (const std::exception& error) {
    std::cerr << "echo_server: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
