// Many greenlets at once: wall time and peak memory (greenev's goals: docs/benchmarks.md).
//
//   hub_soak sleepers [N [SECONDS]]   N tasks (default 100000) each sleep(SECONDS) (default 1),
//                                     joinall; goal: <= 1.15 s wall for 100k x 1 s, <= 8 KiB
//                                     peak RSS per greenlet
//   hub_soak million [N]              N tasks (default 1000000) all waiting on one event, then
//                                     released together; goal: completes, <= 6 GiB peak RSS
//   options: --stack-kib K            stack size (default 32), set with set_default_stack_options
//            --stack-kind guarded|compact   (default compact)
//            --prefault off|background      stack_options::prefault (default background: a helper
//                                           thread faults stacks in ahead; off = the library default)
//
// Peak RSS is /proc/self/status VmHWM, minus its value before the first spawn. Run each mode
// in a fresh process: the peak never goes down. Lines starting "result " are for bench/run.sh.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/mman.h>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/stack.hpp>
#include <greenev/task.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// A "Vm...:  1234 kB" field of /proc/self/status, in bytes.
double status_bytes(std::string_view field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':')
      return std::strtod(line.c_str() + field.size() + 1, nullptr) * 1024;
  }
  return 0;
}

const char* verdict(bool met) {
  return met ? "MET" : "MISSED";
}

void describe_stacks() {
  const greenev::stack_options options = greenev::default_stack_options();
  const char* kind = options.kind == greenev::stack_kind::compact ? "compact" : "guarded";
  std::printf("stacks: %zu KiB, %s", options.size / 1024, kind);
  if (options.kind != greenev::stack_kind::compact)
    std::printf(" (compact beyond %zu guarded stacks)", options.max_guarded_stacks);
  if (options.prefault == greenev::stack_prefault::background) std::printf(", prefaulted in the background");
  std::printf(", set by greenev::set_default_stack_options\n");
}

// The baseline: the first write to one fresh page in each of `count` 32 KiB
// strides of a new mapping, as a greenlet's first frame writes the top of its
// stack. Any design that gives each of `count` live greenlets a page of its own
// pays this; on a VM with shadow page tables it is most of the sleepers'
// overhead (each first touch traps to the hypervisor). Run after the sleepers,
// whose peak RSS it must not raise.
double fresh_page_floor(std::size_t count) {
  constexpr std::size_t stride = 32 * 1024;
  const std::size_t bytes = count * stride;
  void* mapped =
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapped == MAP_FAILED) return -1;
  auto* base = static_cast<volatile char*>(mapped);
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < count; ++i) base[i * stride + stride - 64] = 1;
  const double took = seconds_since(start);
  ::munmap(mapped, bytes);
  return took;
}

// N tasks each sleeping `seconds`, joined; the seed's asynchronous() at scale.
int run_sleepers(std::size_t count, double seconds) {
  std::printf("sleepers: %zu tasks x sleep(%.3f s)\n", count, seconds);
  describe_stacks();
  std::fflush(stdout);
  (void)greenev::hub::current();  // the hub's own memory is not the greenlets'
  const double base = status_bytes("VmHWM");

  clock_type::time_point last_woke{};
  std::vector<greenev::basic_task> tasks;
  tasks.reserve(count);
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < count; ++i) {
    tasks.push_back(greenev::spawn([seconds, &last_woke] {
      greenev::sleep(seconds);
      last_woke = clock_type::now();
    }));
  }
  const double spawned = seconds_since(start);
  // Starts are FIFO: this one runs once every sleeper has started and gone to sleep.
  clock_type::time_point all_asleep{};
  double page_tables = 0;  // not part of RSS
  tasks.push_back(greenev::spawn([&] {
    all_asleep = clock_type::now();
    page_tables = status_bytes("VmPTE");
  }));
  greenev::joinall(tasks);
  const double wall = seconds_since(start);
  const double peak = status_bytes("VmHWM") - base;

  const double asleep = std::chrono::duration<double>(all_asleep - start).count();
  const double woke = std::chrono::duration<double>(last_woke - start).count();
  std::printf("  spawned in %.3f s, all asleep at %.3f s, last woke at %.3f s, joined at %.3f s\n", spawned,
              asleep, woke, wall);
  if (greenev::default_stack_options().prefault == greenev::stack_prefault::background)
    std::printf("  %zu stacks faulted in by the prefault thread\n", greenev::stack_stats().prefaulted);
  const double per_greenlet_kib = peak / static_cast<double>(count) / 1024;
  const double wall_goal = seconds + 0.15;  // 1.15 s for 1 s sleepers: at most 0.15 s of overhead
  std::printf("  wall %.3f s (goal <= %.2f s) %s\n", wall, wall_goal, verdict(wall <= wall_goal));
  std::printf("  peak RSS +%.1f MiB = %.2f KiB per greenlet (goal <= 8 KiB) %s; page tables %.1f MiB more\n",
              peak / (1 << 20), per_greenlet_kib, verdict(per_greenlet_kib <= 8), page_tables / (1 << 20));
  const double floor = fresh_page_floor(count);
  if (floor < 0) {
    std::printf("  baseline: mapping %zu fresh pages failed: %s\n", count, std::strerror(errno));
  } else {
    std::printf(
        "  baseline: a first write to %zu fresh pages (one per 32 KiB, as stack tops) took %.3f s "
        "= %.2f us each; overhead / that = %.2f\n",
        count, floor, floor / static_cast<double>(count) * 1e6, (wall - seconds) / floor);
  }
  std::printf("result sleepers_wall = %.4f s\n", wall);
  std::printf("result sleepers_overhead = %.4f s\n", wall - seconds);
  std::printf("result sleepers_rss_per_greenlet = %.3f KiB\n", per_greenlet_kib);
  if (floor < 0) return 1;  // no baseline: the figures above stand alone
  std::printf("result sleepers_page_floor = %.4f s\n", floor);
  std::printf("result sleepers_page_floor_wall = %.4f s\n", seconds + floor);
  return 0;
}

// N tasks all parked on one event, then released at once.
int run_million(std::size_t count) {
  std::printf("million: %zu tasks waiting on one event, then released\n", count);
  describe_stacks();
  std::fflush(stdout);
  (void)greenev::hub::current();
  const double base_rss = status_bytes("VmHWM");

  greenev::event go;
  std::vector<greenev::basic_task> tasks;
  tasks.reserve(count);
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < count; ++i) tasks.push_back(greenev::spawn([&go] { go.wait(); }));
  greenev::sleep(0);  // every task starts (FIFO) and parks on the event before this returns
  const double parked = seconds_since(start);
  const std::size_t waiting = go.waiters();
  const double page_tables = status_bytes("VmPTE");  // not part of RSS
  go.set();
  greenev::joinall(tasks);
  const double wall = seconds_since(start);
  const double total = status_bytes("VmHWM");

  std::printf("  %zu waiting after %.3f s; all finished at %.3f s\n", waiting, parked, wall);
  std::printf(
      "  peak RSS %.2f GiB (+%.2f GiB, %.2f KiB per greenlet) (goal <= 6 GiB) %s; page tables %.2f GiB "
      "more\n",
      total / (1 << 30), (total - base_rss) / (1 << 30),
      (total - base_rss) / static_cast<double>(count) / 1024,
      verdict(total <= 6.0 * (1 << 30) && waiting == count), page_tables / (1 << 30));
  std::printf("result million_wall = %.4f s\n", wall);
  std::printf("result million_rss = %.4f GiB\n", total / (1 << 30));
  return waiting == count ? 0 : 1;
}

constexpr std::string_view usage_text =
    "usage: hub_soak [--stack-kib K] [--stack-kind guarded|compact] [--prefault off|background]\n"
    "                sleepers [N [SECONDS]]\n"
    "       hub_soak [--stack-kib K] [--stack-kind guarded|compact] [--prefault off|background]\n"
    "                million [N]\n";

int usage_error(std::string_view message) {
  std::cerr << "hub_soak: " << message << "\n\n" << usage_text;
  return 2;
}

std::optional<double> number(const char* text) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(value >= 0)) return std::nullopt;
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> positional;
  // Compact 32 KiB stacks by default: fewer mappings and page-table pages per greenlet than
  // the library's 256 KiB guarded ones, and a sleeping task needs far less than 32 KiB.
  // Background prefaulting (off in the library) overlaps each new stack's page fault with
  // the hub starting greenlets; bench/run.sh also reports the figures with it off.
  greenev::stack_options stacks{.size = 32 * 1024,
                                .kind = greenev::stack_kind::compact,
                                .prefault = greenev::stack_prefault::background};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage_text;
      return 0;
    }
    if (arg == "--stack-kib" || arg == "--stack-kind" || arg == "--prefault") {
      if (++i == argc) return usage_error(std::string(arg) + " needs a value");
      const std::string_view value = argv[i];
      if (arg == "--prefault") {
        if (value != "off" && value != "background") return usage_error("--prefault: off or background");
        stacks.prefault =
            value == "background" ? greenev::stack_prefault::background : greenev::stack_prefault::off;
      } else if (arg == "--stack-kind") {
        if (value != "guarded" && value != "compact") return usage_error("--stack-kind: guarded or compact");
        stacks.kind = value == "compact" ? greenev::stack_kind::compact : greenev::stack_kind::guarded;
      } else {
        const auto kib = number(argv[i]);
        if (!kib) return usage_error("--stack-kib needs a number");
        stacks.size = static_cast<std::size_t>(*kib) * 1024;
      }
    } else {
      positional.push_back(arg);
    }
  }
  try {
    greenev::set_default_stack_options(stacks);
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }

  if (positional.empty()) return usage_error("which mode?");
  std::vector<double> values;
  for (std::size_t i = 1; i < positional.size(); ++i) {
    const auto value = number(positional[i].data());
    if (!value) return usage_error("not a number: '" + std::string(positional[i]) + "'");
    values.push_back(*value);
  }
  if (positional[0] == "sleepers" && values.size() <= 2) {
    const auto count = static_cast<std::size_t>(values.size() > 0 ? values[0] : 100000);
    if (count == 0) return usage_error("sleepers: N must be at least 1");
    return run_sleepers(count, values.size() > 1 ? values[1] : 1.0);
  }
  if (positional[0] == "million" && values.size() <= 1) {
    const auto count = static_cast<std::size_t>(values.size() > 0 ? values[0] : 1000000);
    if (count == 0) return usage_error("million: N must be at least 1");
    return run_million(count);
  }
  return usage_error("bad mode or arguments");
}
