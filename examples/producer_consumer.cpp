// Yield-style producer/consumer: the seed's baozi consumers, on raw switches or on channels.
//
// The seed's consumers are python generators (`new_baozi = yield`, resumed by `con.send(n)`);
// a greenlet does the same with switch_to() (--mode switch), and so do spawned tasks
// handing baozi over a rendezvous channel (--mode queue), with the hub doing the switching.
#include <unistd.h>

#include <functional>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>

#include <greenev/greenlet.hpp>
#include <greenev/queue.hpp>
#include <greenev/task.hpp>

#include "command_line.hpp"

namespace {

constexpr int baozi_count = 5;

// The seed's consumer(name). Nothing runs until the producer's first switch (`con.__next__()`).
greenev::greenlet make_consumer(std::string name) {
  return greenev::greenlet([name = std::move(name)] {
    std::cout << "---->staring eating baozi...\n";  // sic: the seed's output
    for (;;) {
      // `new_baozi = yield`: back to the producer (our parent) until it sends the next one.
      const int baozi = greenev::switch_to_parent<int>();
      std::cout << '[' << name << "] is eating baozi " << baozi << '\n';
    }
  });
}

std::string_view producer_tag() {
  static const bool terminal = isatty(STDOUT_FILENO) == 1;  // escapes only for a terminal
  return terminal ? "\033[32;1m[producer]\033[0m" : "[producer]";
}

// --mode switch: the seed's producer(), driving the consumers by hand.
void run_switch_mode() {
  greenev::greenlet c1 = make_consumer("c1");
  greenev::greenlet c2 = make_consumer("c2");
  c1.switch_to();  // run each to its first yield
  c2.switch_to();
  for (int n = 1; n <= baozi_count; ++n) {
    c1.switch_to(n);  // con.send(n)
    c2.switch_to(n);
    std::cout << producer_tag() << " is making baozi " << n << '\n';
  }
  // Leaving scope drops the last handles: each consumer gets greenlet_exit at its
  // yield, as a python generator gets GeneratorExit from close().
}

// --mode queue: the same story with spawned tasks. A channel is a queue of size zero: put()
// waits until a consumer has taken the baozi, so the lines come out in the same order.
void run_queue_mode() {
  greenev::channel<int> to_c1, to_c2;
  auto consumer = [](std::string name, greenev::channel<int>& baozi) {
    std::cout << "---->staring eating baozi...\n";
    for (;;) {
      const int n = baozi.get();  // new_baozi = yield
      std::cout << '[' << name << "] is eating baozi " << n << '\n';
    }
  };
  auto c1 = greenev::spawn(consumer, "c1", std::ref(to_c1));
  auto c2 = greenev::spawn(consumer, "c2", std::ref(to_c2));
  greenev::yield();  // con.__next__(): let both reach their first get()
  for (int n = 1; n <= baozi_count; ++n) {
    to_c1.put(n);
    to_c2.put(n);
    std::cout << producer_tag() << " is making baozi " << n << '\n';
  }
  greenev::killall({c1, c2});  // the consumers wait forever otherwise
}

constexpr std::string_view usage =
    "usage: producer_consumer [--mode switch|queue]\n"
    "  switch  consumers are greenlets the producer switches into (default; the seed's generators)\n"
    "  queue   consumers are spawned tasks fed through channels (rendezvous queues)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "switch";
  examples::command_line options("producer_consumer", std::string(usage));
  options.choice("--mode", mode, {"switch", "queue"});
  if (const auto status = options.parse(argc, argv)) return *status;
  if (mode == "switch") {
    run_switch_mode();
  } else {
    run_queue_mode();
  }
  return 0;
}
