// Yield-style producer/consumer: the seed's baozi consumers as greenlets the producer switches into.
//
// The seed's consumers are python generators (`new_baozi = yield`, resumed by `con.send(n)`);
// a greenlet does the same with switch_to(), and could yield from any depth of nested calls.
#include <unistd.h>

#include <any>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>

#include <greenev/greenlet.hpp>

namespace {

constexpr int baozi_count = 5;

// `new_baozi = yield` in the seed: give control back to the greenlet that resumes us (the
// producer, our parent) and return the value it sends next.
std::any yield_to_parent() {
  // Not current().parent().switch_to(): its temporary handle to ourselves would stay on our
  // suspended stack, so dropping the last outside handle could never unwind and free us.
  greenev::greenlet parent = greenev::current().parent();
  return parent.switch_to();
}

// The seed's consumer(name). Nothing runs until the producer's first switch (`con.__next__()`).
greenev::greenlet make_consumer(std::string name) {
  return greenev::greenlet([name = std::move(name)] {
    std::cout << "---->staring eating baozi...\n";  // sic: the seed's output
    for (;;) {
      const int baozi = std::any_cast<int>(yield_to_parent());
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

struct mode {
  std::string_view name;
  std::string_view summary;
  void (*run)();
};

constexpr mode modes[] = {
    {"switch", "consumers are greenlets the producer switches into (the seed's generators)", run_switch_mode},
};

void print_usage(std::ostream& out) {
  out << "usage: producer_consumer [--mode MODE]\n\nmodes:\n";
  for (const mode& m : modes)
    out << "  " << m.name << "  " << m.summary << (&m == &modes[0] ? " (default)" : "") << '\n';
}

int usage_error(std::string_view message) {
  std::cerr << "producer_consumer: " << message << "\n\n";
  print_usage(std::cerr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view mode_name = modes[0].name;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      print_usage(std::cout);
      return 0;
    }
    if (arg == "--mode") {
      if (++i == argc) return usage_error("--mode needs a value");
      mode_name = argv[i];
    } else if (arg.starts_with("--mode=")) {
      mode_name = arg.substr(7);
    } else {
      return usage_error("unknown argument '" + std::string(arg) + "'");
    }
  }
  for (const mode& m : modes) {
    if (m.name == mode_name) {
      m.run();
      return 0;
    }
  }
  return usage_error("unknown mode '" + std::string(mode_name) + "'");
}
