// A tiny HTTP/1.1 server for the interposition tests: GET /<ms>/<bytes>
// answers <bytes> bytes of 'x' after <ms> milliseconds. It runs a greenev
// stream_server on its own thread (own hub), so it keeps serving even while
// the test's thread is blocked in unpatched libc calls.
//
//   delayed_http_server server;
//   fetch(server.url(200, 1000));   // "http://127.0.0.1:PORT/200/1000"
#pragma once

#include <cstdio>
#include <future>
#include <string>
#include <thread>

#include <greenev/hub.hpp>
#include <greenev/server.hpp>
#include <greenev/task.hpp>

namespace greenev::testing {

class delayed_http_server {
 public:
  delayed_http_server() {
    std::promise<int> port;
    auto ready = port.get_future();
    thread_ = std::thread([this, &port] { run(port); });
    port_ = ready.get();
  }
  delayed_http_server(const delayed_http_server&) = delete;
  delayed_http_server& operator=(const delayed_http_server&) = delete;
  ~delayed_http_server() {
    hub_->run_callback_threadsafe([this] { stopper_ = greenev::spawn([this] { server_->stop(1.0); }); });
    thread_.join();
  }

  [[nodiscard]] std::string url(int delay_ms, int bytes) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(delay_ms) + "/" +
           std::to_string(bytes);
  }

 private:
  static void handle(greenev::socket& connection, const greenev::address&) {
    std::string request;
    while (request.find("\r\n\r\n") == std::string::npos) {
      std::string more = connection.recv(4096);
      if (more.empty()) return;
      request += more;
    }
    int delay_ms = 0;
    int bytes = 0;
    if (std::sscanf(request.c_str(), "GET /%d/%d", &delay_ms, &bytes) != 2) return;
    greenev::sleep(std::chrono::milliseconds(delay_ms));
    connection.sendall(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(bytes) +
        "\r\nConnection: close\r\n\r\n" + std::string(static_cast<std::size_t>(bytes), 'x'));
  }

  void run(std::promise<int>& port) {
    hub_ = &greenev::hub::current();
    greenev::stream_server server(greenev::address::parse("127.0.0.1", 0), handle);
    server_ = &server;
    server.start();
    port.set_value(server.local_address().port());
    server.serve_forever();
    stopper_.join();
  }

  std::thread thread_;
  int port_ = 0;
  greenev::hub* hub_ = nullptr;
  greenev::stream_server* server_ = nullptr;
  greenev::task<void> stopper_;
};

}  // namespace greenev::testing
