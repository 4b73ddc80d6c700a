// Two greenlets interleaving on sleep: the seed's func/func2, printing first, second, third, fourth.
//
// The python original (each print coloured with an ANSI escape):
//   def func():  print("I am the first");  gevent.sleep(2); print("I am the third")
//   def func2(): print("I am the second"); gevent.sleep(2); print("I am the fourth")
//   gevent.joinall([gevent.spawn(func), gevent.spawn(func2)])
#include <unistd.h>

#include <cmath>
#include <iostream>
#include <string>
#include <string_view>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

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

int usage_error(std::string_view message) {
  std::cerr << "sleep_order: " << message << "\n\nusage: sleep_order [--delay SECONDS]  (default 2)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  double delay = 2.0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << "usage: sleep_order [--delay SECONDS]  (default 2)\n";
      return 0;
    }
    if (arg != "--delay") return usage_error("unknown argument '" + std::string(arg) + "'");
    if (++i == argc) return usage_error("--delay needs a value");
    std::size_t used = 0;
    try {
      delay = std::stod(argv[i], &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || argv[i][used] != '\0' || !std::isfinite(delay) || delay < 0)
      return usage_error("--delay needs a number of seconds >= 0, not '" + std::string(argv[i]) + "'");
  }

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
