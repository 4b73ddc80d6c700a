// "Hello, World!" over HTTP/1.1 on greenev::http_server (gevent.pywsgi's hello world).
//
// Every path answers "Hello, World!" with keep-alive, one greenlet per connection.
// SIGINT or SIGTERM stops it gracefully (exit status 0). --workers N serves on N
// threads, each with its own hub, through a SO_REUSEPORT listener; --cert and --key
// serve HTTPS instead (a PEM certificate chain and its private key).
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>

#include <greenev/http_server.hpp>
#include <greenev/signal.hpp>

#include "command_line.hpp"

namespace {

void hello(greenev::http_request& /*request*/, greenev::http_response& response) {
  response.set_header("Content-Type", "text/plain");
  response.send("Hello, World!\n");
}

constexpr std::string_view usage_text =
    "usage: hello_http [--host HOST] [--port PORT] [--workers N] [--cert FILE --key FILE]\n"
    "  --host HOST     numeric address to listen on (default 127.0.0.1)\n"
    "  --port PORT     0..65535, 0 picks a free port (default 8080)\n"
    "  --workers N     threads serving the port, 1..64 (default 1)\n"
    "  --cert FILE     serve HTTPS with this PEM certificate chain (needs --key)\n"
    "  --key FILE      the certificate's PEM private key (needs --cert)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 8080;
  long workers = 1;
  examples::command_line options("hello_http", std::string(usage_text));
  options.text("--host", host);
  options.integer("--port", port, 0, 65535);
  options.integer("--workers", workers, 1, 64);
  std::string cert;
  std::string key;
  options.text("--cert", cert);
  options.text("--key", key);
  if (const auto status = options.parse(argc, argv)) return *status;
  if (cert.empty() != key.empty()) {
    std::cerr << "hello_http: --cert and --key go together\n\n" << usage_text;
    return 2;
  }
  try {
    greenev::http_server_options settings{.workers = static_cast<unsigned>(workers)};
    if (!cert.empty()) {
      settings.tls = greenev::tls_context(
          {.role = greenev::tls_role::server, .certificate_chain_file = cert, .private_key_file = key});
    }
    greenev::http_server server(greenev::address::parse(host, static_cast<std::uint16_t>(port)), hello,
                                std::move(settings));
    server.start();
    std::printf("listening on %s\n", server.local_address().to_string().c_str());
    std::fflush(stdout);
    greenev::signal_handler on_int(SIGINT, [&] { server.stop(); });
    greenev::signal_handler on_term(SIGTERM, [&] { server.stop(); });
    server.serve_forever();
  } catch (const std::exception& error) {
    std::cerr << "hello_http: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
