// The WebSocket shopping cart (Tornado's demo) on greenev::http_server and greenev::websocket.
//
// One item in stock ten times. GET / serves a page with the count and a fresh session
// id; its "Add to cart" / "Remove from cart" buttons POST /cart (action=add|remove,
// session=ID), and every page keeps a WebSocket on /cart/status open, on which the
// server pushes {"inventoryCount":"N"} at each change (and the count when it connects),
// so every open page shows the stock live. A session holds at most one item: adding
// twice is a no-op, as in the original; so is adding when none is left.
// SIGINT or SIGTERM closes the websockets (1001) and stops the server (exit status 0).
#include <cctype>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/detail/scope_exit.hpp>
#include <greenev/http_server.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/signal.hpp>
#include <greenev/websocket.hpp>

#include "command_line.hpp"

namespace {

constexpr int inventory = 10;

// The shop: which sessions hold the item, and the pages watching the count.
// One thread (the server runs one worker), so plain containers do.
struct shop {
  std::set<std::string> carts;
  std::set<std::shared_ptr<greenev::websocket>> watchers;
  greenev::lock pushing;  // one push round at a time, so every page sees the counts in order

  [[nodiscard]] int count() const { return inventory - static_cast<int>(carts.size()); }
  [[nodiscard]] std::string status() const {
    return R"({"inventoryCount":")" + std::to_string(count()) + "\"}";
  }

  // Sends the count to every page; a page that is gone or too slow is dropped.
  void push() {
    const std::lock_guard<greenev::lock> hold(pushing);
    const std::string message = status();
    const std::vector<std::shared_ptr<greenev::websocket>> now(watchers.begin(), watchers.end());
    for (const auto& ws : now) {
      try {
        ws->send_text(message);
      } catch (const greenev::websocket_closed&) {
        watchers.erase(ws);
      }
    }
  }
};

std::string new_session() {
  static std::random_device entropy;
  std::string id;
  for (int i = 0; i < 4; ++i) {
    char part[9];
    std::snprintf(part, sizeof part, "%08x", static_cast<unsigned>(entropy()));
    id += part;
  }
  return id;
}

std::string page(int count, const std::string& session) {
  return R"(<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>greenev WebSocket cart</title></head>
<body>
<h1>Shopping cart</h1>
<p>Items left in stock: <span id="count">)" +
         std::to_string(count) + R"(</span></p>
<p><button id="add">Add to cart</button> <button id="remove">Remove from cart</button></p>
<script>
const session = ")" +
         session +
         R"(";
const count = document.getElementById("count");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const status = new WebSocket(scheme + location.host + "/cart/status");
status.onmessage = (event) => { count.textContent = JSON.parse(event.data).inventoryCount; };
function post(action) {
  fetch("/cart", {method: "POST",
                  headers: {"Content-Type": "application/x-www-form-urlencoded"},
                  body: "action=" + action + "&session=" + encodeURIComponent(session)});
}
document.getElementById("add").addEventListener("click", () => post("add"));
document.getElementById("remove").addEventListener("click", () => post("remove"));
</script>
</body>
</html>
)";
}

// application/x-www-form-urlencoded: the value of `name`, decoded; empty if absent.
std::string form_field(std::string_view form, std::string_view name) {
  while (!form.empty()) {
    const std::size_t amp = form.find('&');
    const std::string_view pair = form.substr(0, amp);
    form = amp == std::string_view::npos ? std::string_view() : form.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name || eq == std::string_view::npos) continue;
    std::string value;
    const std::string_view raw = pair.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
        value += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return {};
}

void serve(shop& s, greenev::http_request& req, greenev::http_response& res) {
  if (req.path() == "/" && (req.method() == "GET" || req.method() == "HEAD")) {
    res.set_header("Content-Type", "text/html; charset=utf-8");
    res.set_header("Cache-Control", "no-store");  // a fresh session per load
    return res.send(page(s.count(), new_session()));
  }
  if (req.path() == "/cart" && req.method() == "POST") {
    const std::string form = req.read_body();
    const std::string action = form_field(form, "action");
    const std::string session = form_field(form, "session");
    res.set_header("Content-Type", "text/plain");
    if (session.empty() || (action != "add" && action != "remove")) {
      res.set_status(400);
      return res.send("need session=ID and action=add or action=remove\n");
    }
    bool changed = false;
    if (action == "add" && s.count() > 0) {
      changed = s.carts.insert(session).second;
    } else if (action == "remove") {
      changed = s.carts.erase(session) > 0;
    }
    if (changed) s.push();
    return res.send(s.status() + "\n");
  }
  if (req.path() == "/cart/status") {
    if (!greenev::is_websocket_upgrade(req)) throw greenev::http_error(400, "this is a WebSocket");
    auto ws = std::make_shared<greenev::websocket>(
        greenev::websocket::accept(req, res, {.write_timeout = 5.0, .close_timeout = 1.0}));
    {
      const std::lock_guard<greenev::lock> hold(s.pushing);  // no push between this count and joining
      ws->send_text(s.status());
      s.watchers.insert(ws);
    }
    const auto leave = greenev::detail::scope_exit([&] { s.watchers.erase(ws); });
    while (ws->receive()) {  // the page sends nothing; this ends when it goes
    }
    return;
  }
  res.set_status(404);
  res.set_header("Content-Type", "text/plain");
  res.send("not found\n");
}

constexpr std::string_view usage_text =
    "usage: websocket_cart [--host HOST] [--port PORT]\n"
    "  --host HOST     numeric address to listen on (default 127.0.0.1)\n"
    "  --port PORT     0..65535, 0 picks a free port (default 8888)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 8888;
  examples::command_line options("websocket_cart", std::string(usage_text));
  options.text("--host", host);
  options.integer("--port", port, 0, 65535);
  if (const auto status = options.parse(argc, argv)) return *status;
  try {
    shop s;
    greenev::http_server server(
        greenev::address::parse(host, static_cast<std::uint16_t>(port)),
        [&s](greenev::http_request& req, greenev::http_response& res) { serve(s, req, res); });
    server.start();
    std::printf("listening on %s\n", server.local_address().to_string().c_str());
    std::fflush(stdout);
    const auto stop = [&] {
      // Say goodbye to the pages first: their handlers then end on their own.
      const std::vector<std::shared_ptr<greenev::websocket>> open(s.watchers.begin(), s.watchers.end());
      for (const auto& ws : open) ws->close(1001, "server stopping");
      server.stop();
    };
    greenev::signal_handler on_int(SIGINT, stop);
    greenev::signal_handler on_term(SIGTERM, stop);
    server.serve_forever();
  } catch (const std::exception& error) {
    std::cerr << "websocket_cart: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
