// Concurrent DNS lookups: one greenlet per name, all sharing the thread's c-ares channel.
//
//   resolve example.org localhost 127.0.0.1
//   example.org 93.184.215.14 2606:2800:21f:cb07:6820:80da:af6b:8b2c
//   localhost 127.0.0.1
//   127.0.0.1 127.0.0.1
//
// The python original would be gevent.joinall over gevent.spawn(socket.getaddrinfo, name).
// GREENEV_RESOLVER=thread uses libc on a threadpool instead; GREENEV_RESOLVER_NAMESERVERS
// and GREENEV_RESOLVER_TIMEOUT pick the servers and the timeout per try.
#include <algorithm>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/dns.hpp>
#include <greenev/task.hpp>

namespace {

// "NAME ADDRESS..." (distinct addresses, in the resolver's order), or the error.
struct outcome {
  bool ok = true;
  std::string text;
};

outcome resolve(const std::string& name) {
  try {
    std::string line = name;
    std::vector<std::string> seen;
    for (const greenev::address_info& info : greenev::getaddrinfo(name, {}, {.socktype = SOCK_STREAM})) {
      const std::string host = info.address.host();
      if (std::find(seen.begin(), seen.end(), host) != seen.end()) continue;
      seen.push_back(host);
      line += " " + host;
    }
    return {true, line};
  } catch (const std::exception& error) {  // caught here, so the hub does not report it too
    return {false, name + ": " + error.what()};
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
    std::cerr << "usage: resolve NAME...\n";
    return 2;
  }
  const std::vector<std::string> names(argv + 1, argv + argc);

  // Every lookup starts now; each greenlet parks while its query is in flight.
  std::vector<greenev::task<outcome>> lookups;
  for (const std::string& name : names) lookups.push_back(greenev::spawn(resolve, name));

  // Results in argument order, whatever order the answers came in.
  int status = 0;
  for (auto& lookup : lookups) {
    const outcome result = lookup.get();
    (result.ok ? std::cout : std::cerr) << result.text << '\n';
    if (!result.ok) status = 1;
  }
  return status;
}
