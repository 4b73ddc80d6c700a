// One greenlet per connection: the seed's gevent echo server, on greenev::stream_server.
//
// The python original accepts in a loop and spawns handle_request(conn) for each
// client, echoing until the client closes. Here stream_server does the accepting;
// SIGINT or SIGTERM stops it gracefully (exit status 0). --workers N serves on N
// threads, each with its own hub, through a SO_REUSEPORT listener.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include <greenev/server.hpp>
#include <greenev/signal.hpp>

namespace {

void handle_request(greenev::socket& conn, const greenev::address& /*peer*/) {
  char data[4096];
  while (const std::size_t n = conn.recv_into(data)) conn.sendall({data, n});  // 0: the client closed
}

constexpr std::string_view usage_text =
    "usage: echo_server [--host HOST] [--port PORT] [--workers N]\n"
    "  --host HOST     numeric address to listen on (default 127.0.0.1)\n"
    "  --port PORT     0..65535, 0 picks a free port (default 8001)\n"
    "  --workers N     threads serving the port, 1..64 (default 1)\n";

int usage_error(std::string_view message) {
  std::cerr << "echo_server: " << message << "\n\n" << usage_text;
  return 2;
}

// The whole of `text` as an integer in [low, high], or false.
bool parse_integer(const char* text, long low, long high, long& out) {
  std::size_t used = 0;
  try {
    out = std::stol(text, &used);
  } catch (const std::exception&) {
    return false;
  }
  return text[used] == '\0' && out >= low && out <= high;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 8001;
  long workers = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage_text;
      return 0;
    }
    if (arg != "--host" && arg != "--port" && arg != "--workers")
      return usage_error("unknown argument '" + std::string(arg) + "'");
    if (++i == argc) return usage_error(std::string(arg) + " needs a value");
    const bool ok = arg == "--host"   ? !(host = argv[i]).empty()
                    : arg == "--port" ? parse_integer(argv[i], 0, 65535, port)
                                      : parse_integer(argv[i], 1, 64, workers);
    if (!ok) return usage_error("bad value '" + std::string(argv[i]) + "' for " + std::string(arg));
  }
  try {
    greenev::stream_server server(greenev::address::parse(host, static_cast<std::uint16_t>(port)),
                                  handle_request, {.workers = static_cast<unsigned>(workers)});
    server.start();
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
