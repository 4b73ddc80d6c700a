// Long polling on greenlets: the Tornado notes' shopping cart, one greenlet per held request.
//
// GET / serves the page (a fresh session each load); POST /cart with action=add|remove
// and session moves the one item; GET /cart/status is held until the inventory changes,
// then answers {"inventoryCount":"N"} (at once if ?count=N is not the count now, so a
// change between two polls is never missed). SIGINT or SIGTERM stops it (exit 0).
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>

#include <greenev/event.hpp>
#include <greenev/http_server.hpp>
#include <greenev/signal.hpp>

#include "cart_page.hpp"
#include "command_line.hpp"

namespace {

constexpr int total_inventory = 10;
std::set<std::string> carts;                            // sessions holding the item
auto next_change = std::make_shared<greenev::event>();  // set (and replaced) on every change

int inventory() {
  return total_inventory - static_cast<int>(carts.size());
}

// The page's part: poll /cart/status with the count it shows, forever.
constexpr std::string_view long_poll_script = R"(async function poll() {
  for (;;) {
    try {
      const count = document.getElementById("count").textContent;
      const answer = await fetch("/cart/status?count=" + count);
      show((await answer.json()).inventoryCount);
    } catch (error) {
      await new Promise(resume => setTimeout(resume, 1000));  // the server went away: try again
    }
  }
}
poll();)";

void changed() {
  std::make_shared<greenev::event>().swap(next_change);  // later polls wait for the next one
}

void status(greenev::http_request& request, greenev::http_response& response) {
  const std::string known = examples::form_value(request.query(), "count");
  if (known.empty() || known == std::to_string(inventory())) {
    const std::shared_ptr<greenev::event> change = next_change;
    change->wait(55.0);  // this greenlet alone waits; a quiet minute answers the count anyway
  }
  response.set_header("Content-Type", "application/json");
  response.send("{\"inventoryCount\":\"" + std::to_string(inventory()) + "\"}");
}

void handle(greenev::http_request& request, greenev::http_response& response) {
  if (request.method() == "GET" && request.path() == "/") {
    response.set_header("Content-Type", "text/html; charset=utf-8");
    response.send(examples::cart_page(examples::new_session(), inventory(), long_poll_script));
  } else if (request.method() == "POST" && request.path() == "/cart") {
    const std::string body = request.read_body();
    const std::string action = examples::form_value(body, "action");
    const std::string session = examples::form_value(body, "session");
    if (session.empty() || (action != "add" && action != "remove")) {
      response.set_status(400);
      return response.send("need session and action=add|remove\n");
    }
    const bool moved = action == "add" ? carts.insert(session).second : carts.erase(session) > 0;
    if (moved) {
      const std::shared_ptr<greenev::event> change = next_change;
      changed();
      change->set();  // every held /cart/status answers now
    }
    response.send("");
  } else if (request.method() == "GET" && request.path() == "/cart/status") {
    status(request, response);
  } else {
    response.set_status(404);
    response.send("not found\n");
  }
}

constexpr std::string_view usage_text =
    "usage: longpoll_cart [--host HOST] [--port PORT]\n"
    "  --host HOST     numeric address to listen on (default 127.0.0.1)\n"
    "  --port PORT     0..65535, 0 picks a free port (default 8000)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 8000;
  examples::command_line options("longpoll_cart", std::string(usage_text));
  options.text("--host", host);
  options.integer("--port", port, 0, 65535);
  if (const auto status = options.parse(argc, argv)) return *status;
  try {
    greenev::http_server server(greenev::address::parse(host, static_cast<std::uint16_t>(port)), handle);
    server.start();
    std::printf("listening on %s\n", server.local_address().to_string().c_str());
    std::fflush(stdout);
    greenev::signal_handler on_int(SIGINT, [&] { server.stop(); });
    greenev::signal_handler on_term(SIGTERM, [&] { server.stop(); });
    server.serve_forever();
  } catch (const std::exception& error) {
    std::cerr << "longpoll_cart: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
