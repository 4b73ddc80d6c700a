// The shopping-cart demos' shared parts: the page (one item, a count, add and
// remove buttons posting to /cart with the page's session), form decoding and
// session ids. The page's contract, which tests/browser drives: #count holds the
// inventory count, #add and #remove are the buttons.
#pragma once

#include <cstdio>
#include <random>
#include <string>
#include <string_view>

namespace examples {

/// A fresh random session id (128 bits, hex).
inline std::string new_session() {
  static std::random_device seed;
  static std::mt19937_64 random(seed());
  char text[33];
  std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random()));
  return text;
}

/// The value of `name` in an application/x-www-form-urlencoded `text` ("" if absent).
inline std::string form_value(std::string_view text, std::string_view name) {
  while (!text.empty()) {
    const std::size_t end = text.find('&');
    const std::string_view pair = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    const std::size_t equals = pair.find('=');
    if (pair.substr(0, equals) != name) continue;
    std::string value;
    const std::string_view raw =
        equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size()) {
        value += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return "";
}

/// The page, for `session` and the `count` now; `push_script` is the JavaScript
/// that keeps #count current (it may call show(count)).
inline std::string cart_page(const std::string& session, int count, std::string_view push_script) {
  std::string page = R"(<!doctype html>
<html><head><meta charset="utf-8"><title>greenev shopping cart</title></head>
<body>
<h1>One item, ten in stock</h1>
<p><span id="count">)" +
                     std::to_string(count) +
                     R"(</span> left in stock</p>
<button id="add">Add to cart</button> <button id="remove">Remove from cart</button>
<script>
const session = ")" + session +
                     R"(";
function show(count) { document.getElementById("count").textContent = count; }
function cart(action) {
  fetch("/cart", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"},
                  body: "action=" + action + "&session=" + session});
}
document.getElementById("add").onclick = () => cart("add");
document.getElementById("remove").onclick = () => cart("remove");
)";
  page += push_script;
  page += "\n</script>\n</body></html>\n";
  return page;
}

}  // namespace examples
