// Two greenlets interleaving on sleep: the seed's func/func2, printing first, second, third, fourth.
//
// The python original (each print coloured with an ANSI escape):
//   def func():  print("I am the first");  gevent.sleep(2); print("I am the third")
//   def func2(): print("I am the second"); gevent.sleep(2); print("I am the fourth")
//   gevent.joinall([gevent.spawn(func), gevent.spawn(func2)])
#include <unistd.h>

#include <iostream>
#include <limits>
#include <string>
#include <string_view>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "command_line.hpp"

namespace {

// The seed's colours (red, green, yellow, blue), only when writing to a terminal.
void say(std::string_view text, int colour) {
  static const bool terminal = isatty(STDOUT_FILENO) == 1;
  if (terminal) {
    std::cout << "\033[" << colour << ";1m" << text << "\033[0m\n";
  } else {
    std::cout << text << '\n';
  }
  std::cout.flush();  // the lines appear as they happen, seconds apart
}

}  // namespace

int main(int argc, char** argv) {
  double delay = 2.0;
  examples::command_line options("sleep_order", "usage: sleep_order [--delay SECONDS]  (default 2)\n");
  options.number("--delay", delay, 0, std::numeric_limits<double>::max());
  if (const auto status = options.parse(argc, argv)) return *status;

  auto func = [delay] {
    say("I am the first", 31);
    greenev::sleep(delay);  // func2 runs meanwhile
    say("I am the third", 32);
  };
  auto func2 = [delay] {
    say("I am the second", 33);
    greenev::sleep(delay);
    say("I am the fourth", 34);
  };
  // Both sleeps end at about the same time; the hub wakes sleepers in deadline order.
  greenev::joinall({greenev::spawn(func), greenev::spawn(func2)});
  return 0;
}
