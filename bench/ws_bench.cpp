// WebSocket benchmarks for bench/web_bench.sh, one program in three roles:
//
//   ws_bench server [--port P]        an http_server whose /echo echoes every message
//                                     and whose /feed clients get each broadcast; a POST
//                                     /broadcast sends one message to every /feed client
//   ws_bench echo --port P --mode ws|tcp [--connections 100] [--seconds 3]
//                                     closed-loop 64-byte echoes over WebSockets (against
//                                     the server above) or plain TCP (against
//                                     examples/echo_server); prints round trips/s
//   ws_bench broadcast --port P [--clients 10000]
//                                     connects the clients to /feed, asks for one
//                                     broadcast, and prints when the first and the
//                                     last one had it, and how long the server's
//                                     loop of sends took; the clients close once
//                                     all have it
//
// The clients are greenev's own (sockets, websocket::connect), one greenlet each, so the
// two echo modes differ only in the protocol.
#include <sys/resource.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <string>
#include <vector>

#include <greenev/event.hpp>
#include <greenev/http_server.hpp>
#include <greenev/signal.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>
#include <greenev/websocket.hpp>

#include "../examples/command_line.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

void raise_fd_limit() {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &files);
}

int serve(long port) {
  std::list<greenev::websocket*> feed;
  greenev::http_server server(
      greenev::address::parse("127.0.0.1", static_cast<std::uint16_t>(port)),
      [&feed](greenev::http_request& req, greenev::http_response& res) {
        if (req.path() == "/broadcast") {
          const std::string message = "{\"inventoryCount\":\"9\"}";
          const auto start = clock_type::now();
          long sent = 0;
          for (greenev::websocket* ws : feed) {
            try {
              ws->send_text(message);
              ++sent;
            } catch (const std::exception&) {  // a client that left: it is removed below
            }
          }
          const double ms = std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
          return res.send("sent " + std::to_string(sent) + " in " + std::to_string(ms) + " ms\n");
        }
        if (!greenev::is_websocket_upgrade(req)) return res.send("not a websocket\n");
        greenev::websocket ws = greenev::websocket::accept(req, res);
        if (req.path() == "/feed") {
          const auto at = feed.insert(feed.end(), &ws);
          while (ws.receive()) {
          }
          feed.erase(at);
        } else {
          while (auto message = ws.receive()) ws.send(*message);
        }
      });
  server.start();
  std::printf("listening on %s\n", server.local_address().to_string().c_str());
  std::fflush(stdout);
  greenev::signal_handler on_term(SIGTERM, [&] { server.stop(1.0); });
  greenev::signal_handler on_int(SIGINT, [&] { server.stop(1.0); });
  server.serve_forever();
  return 0;
}

int echo(long port, const std::string& mode, long connections, double seconds) {
  const auto where = greenev::address::parse("127.0.0.1", static_cast<std::uint16_t>(port));
  const std::string payload(64, 'x');
  long rounds = 0;
  long errors = 0;
  bool measuring = false;
  bool done = false;
  std::vector<greenev::task<void>> clients;
  for (long i = 0; i < connections; ++i) {
    clients.push_back(greenev::spawn([&] {
      try {
        if (mode == "ws") {
          greenev::websocket ws = greenev::websocket::connect("ws://" + where.to_string() + "/echo");
          while (!done) {
            ws.send_binary(payload);
            const auto reply = ws.receive();
            if (!reply || reply->data != payload) {
              ++errors;
              return;
            }
            if (measuring) ++rounds;
          }
          ws.close();
        } else {
          greenev::socket s(AF_INET, SOCK_STREAM);
          s.connect(where);
          char buffer[64];
          while (!done) {
            s.sendall(payload);
            std::size_t got = 0;
            while (got < sizeof buffer) {
              const std::size_t n = s.recv_into(std::span<char>(buffer + got, sizeof buffer - got));
              if (n == 0) {
                ++errors;
                return;
              }
              got += n;
            }
            if (measuring) ++rounds;
          }
        }
      } catch (const std::exception&) {
        ++errors;
      }
    }));
  }
  greenev::sleep(0.5);  // warm up
  measuring = true;
  const auto start = clock_type::now();
  greenev::sleep(seconds);
  measuring = false;
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  done = true;
  for (auto& client : clients) client.join();
  std::printf("result %s_echo_rps = %.0f round_trips/s\nresult %s_echo_errors = %ld errors\n", mode.c_str(),
              static_cast<double>(rounds) / elapsed, mode.c_str(), errors);
  return errors == 0 ? 0 : 1;
}

int broadcast(long port, long count) {
  const auto where = greenev::address::parse("127.0.0.1", static_cast<std::uint16_t>(port));
  long connected = 0;
  long received = 0;
  long failed = 0;
  clock_type::time_point sent{};
  clock_type::time_point first = clock_type::time_point::max();
  clock_type::time_point last{};
  // Like a page on a feed, a client stays connected once it has the message: the
  // clients close only after all of them have it (or failed), so the figure is the
  // delivery alone, not the delivery mixed with 10,000 close handshakes.
  greenev::event everyone_done;
  const auto done_one = [&] {
    if (received + failed >= count) everyone_done.set();
  };
  std::vector<greenev::task<void>> clients;
  for (long i = 0; i < count; ++i) {
    clients.push_back(greenev::spawn([&] {
      try {
        greenev::websocket ws = greenev::websocket::connect("ws://" + where.to_string() + "/feed");
        ++connected;
        const auto message = ws.receive();
        if (message && message->data == "{\"inventoryCount\":\"9\"}") {
          ++received;
          const auto now = clock_type::now();
          first = std::min(first, now);
          last = std::max(last, now);
        } else {
          ++failed;
        }
        done_one();
        everyone_done.wait(60.0);
        ws.close();
      } catch (const std::exception&) {
        ++failed;
        done_one();
      }
    }));
  }
  while (connected + failed < count) greenev::sleep(0.01);
  greenev::sleep(1.0);  // the server has every client in its list
  greenev::socket poster(AF_INET, SOCK_STREAM);
  poster.connect(where);
  sent = clock_type::now();
  poster.sendall("POST /broadcast HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n");
  // The server's answer: how long its loop of sends took ("sent N in X ms").
  poster.set_timeout(60.0);
  std::string answer;
  char buffer[512];
  while (answer.find(" ms\n") == std::string::npos) {
    const std::size_t n = poster.recv_into(buffer);
    if (n == 0) break;
    answer.append(buffer, n);
  }
  for (auto& client : clients) client.join();
  const std::size_t in = answer.rfind(" in ");
  const double server_ms = in == std::string::npos ? -1 : std::strtod(answer.c_str() + in + 4, nullptr);
  const auto ms = [&](clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(t - sent).count();
  };
  std::printf("result broadcast_clients = %ld clients\nresult broadcast_received = %ld clients\n", count,
              received);
  std::printf("result broadcast_server_sends_ms = %.1f ms\nresult broadcast_first_ms = %.1f ms\n", server_ms,
              received > 0 ? ms(first) : -1.0);
  std::printf("result broadcast_ms = %.1f ms\n", ms(last));
  return received == count ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage =
      "usage: ws_bench server [--port P] | echo --port P --mode ws|tcp [--connections N] [--seconds S]"
      " | broadcast --port P [--clients N]\n";
  if (argc < 2) {
    std::fputs(usage.c_str(), stderr);
    return 2;
  }
  const std::string role = argv[1];
  long port = 0;
  long connections = 100;
  long clients = 10000;
  double seconds = 3;
  std::string mode = "ws";
  examples::command_line options("ws_bench", usage);
  options.integer("--port", port, 0, 65535);
  options.integer("--connections", connections, 1, 100000);
  options.integer("--clients", clients, 1, 1000000);
  options.number("--seconds", seconds, 0.1, 3600);
  options.choice("--mode", mode, {"ws", "tcp"});
  if (const auto status = options.parse(argc - 1, argv + 1)) return *status;
  raise_fd_limit();
  if (role == "server") return serve(port);
  if (role == "echo") return echo(port, mode, connections, seconds);
  if (role == "broadcast") return broadcast(port, clients);
  std::fputs(usage.c_str(), stderr);
  return 2;
}
