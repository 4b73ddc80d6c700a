// A greenlet per datagram: gevent's DatagramServer echo (udp_server.py), on greenev::datagram_server.
//
// Every datagram is sent back to its sender. SIGINT or SIGTERM stops the server
// gracefully (exit status 0).
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include <greenev/datagram_server.hpp>
#include <greenev/signal.hpp>

#include "command_line.hpp"

namespace {

void echo(greenev::datagram_server& server, std::string_view data, const greenev::address& from) {
  server.sendto(data, from);
}

constexpr std::string_view usage_text =
    "usage: udp_echo [--host HOST] [--port PORT]\n"
    "  --host HOST     numeric address to listen on (default 127.0.0.1)\n"
    "  --port PORT     0..65535, 0 picks a free port (default 9000)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 9000;
  examples::command_line options("udp_echo", std::string(usage_text));
  options.text("--host", host);
  options.integer("--port", port, 0, 65535);
  if (const auto status = options.parse(argc, argv)) return *status;
  try {
    greenev::datagram_server server(greenev::address::parse(host, static_cast<std::uint16_t>(port)), echo);
    server.start();
    std::printf("listening on %s\n", server.local_address().to_string().c_str());
    std::fflush(stdout);
    greenev::signal_handler on_int(SIGINT, [&] { server.stop(); });
    greenev::signal_handler on_term(SIGTERM, [&] { server.stop(); });
    server.serve_forever();
  } catch (const std::exception& error) {
    std::cerr << "udp_echo: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
