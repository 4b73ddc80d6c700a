// 1000 concurrent DNS lookups of distinct names against a local nameserver
// (bench/dns_bench.sh starts dnsmasq with the names), one greenlet each,
// all sharing the thread's c-ares channel. greenev's goal (docs/benchmarks.md): <= 0.05 s;
// bench/dns_bench.py measures gevent's ares resolver the same way.
//
//   dns_bench --nameserver 127.0.0.1:5353 [--names 1000] [--rounds 1] [--backend ares|thread]
//
// Names are host<i>.bench.greenev.test -> 10.<i/65536>.<i/256%256>.<i%256>.
// Prints one line per round: "greenev seconds=S lookups_per_second=R" (the
// lookups start together; the clock stops when the last answer is back).
// Exits 1 if any answer is wrong.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/dns.hpp>
#include <greenev/task.hpp>

namespace {

std::string name_of(int i) {
  return "host" + std::to_string(i) + ".bench.greenev.test";
}

std::string address_of(int i) {
  return "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
         std::to_string(i % 256);
}

int usage(const char* why) {
  std::fprintf(stderr,
               "dns_bench: %s\nusage: dns_bench --nameserver IP:PORT [--names N] [--rounds R] "
               "[--backend ares|thread]\n",
               why);
  return 2;
}

int run(int argc, char** argv) {
  greenev::resolver_options options;
  int names = 1000;
  int rounds = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return usage("every option takes a value");
    const char* value = argv[++i];
    if (arg == "--nameserver") {
      options.nameservers.emplace_back(value);
    } else if (arg == "--names") {
      names = std::atoi(value);
    } else if (arg == "--rounds") {
      rounds = std::atoi(value);
    } else if (arg == "--backend") {
      options.backend = std::string_view(value) == "thread" ? greenev::resolver_backend::thread
                                                            : greenev::resolver_backend::ares;
    } else {
      return usage("unknown option");
    }
  }
  if (options.nameservers.empty() || names < 1 || rounds < 1) return usage("bad arguments");
  greenev::configure_resolver(options);

  // One lookup first, outside the clock: creates the channel, as gevent's
  // resolver is created before its run is timed.
  if (greenev::gethostbyname(name_of(0)) != address_of(0)) return usage("the nameserver gives wrong answers");

  int status = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<greenev::task<std::string>> lookups;
    lookups.reserve(static_cast<std::size_t>(names));
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < names; ++i) {
      lookups.push_back(greenev::spawn([i] { return greenev::gethostbyname(name_of(i)); }));
    }
    int wrong = 0;
    for (int i = 0; i < names; ++i)
      wrong += lookups[static_cast<std::size_t>(i)].get() == address_of(i) ? 0 : 1;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("greenev seconds=%.4f lookups_per_second=%.0f\n", seconds, names / seconds);
    if (wrong != 0) {
      std::fprintf(stderr, "dns_bench: %d wrong answers\n", wrong);
      status = 1;
    }
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {  // e.g. the nameserver is not up yet
    std::fprintf(stderr, "dns_bench: %s\n", error.what());
    return 1;
  }
}
