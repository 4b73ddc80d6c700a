// N tasks that each sleep D seconds, run one after another and then spawned together.
//
// The python original:
//   def task(pid): gevent.sleep(0.5); print("Task %s done" % pid)
//   synchronous():  for i in range(1, 10): task(i)
//   asynchronous(): gevent.joinall([gevent.spawn(task, i) for i in range(10)])
// Here both runs do tasks 1..N (the seed's ranges differ by one, an accident), and a last
// line reports both wall times: `sync=X.XXs async=Y.YYs`.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <greenev/hub.hpp>
#include <greenev/task.hpp>

#include "command_line.hpp"

namespace {

void task(int pid, double delay) {
  greenev::sleep(delay);  // only this greenlet waits
  std::cout << "Task " << pid << " done\n";
}

template <class F>
double seconds_taken(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

constexpr std::string_view usage_text =
    "usage: sync_vs_async [--tasks N] [--delay SECONDS]\n"
    "  --tasks N          tasks per run, 1..100000 (default 10)\n"
    "  --delay SECONDS    how long each task sleeps, 0..3600 (default 0.5)\n";

}  // namespace

int main(int argc, char** argv) {
  long tasks = 10;
  double delay = 0.5;
  examples::command_line options("sync_vs_async", std::string(usage_text));
  options.integer("--tasks", tasks, 1, 100000);
  options.number("--delay", delay, 0, 3600);
  if (const auto status = options.parse(argc, argv)) return *status;
  const int count = static_cast<int>(tasks);

  std::cout << "Synchronous:\n";
  const double sync = seconds_taken([&] {
    for (int pid = 1; pid <= count; ++pid) task(pid, delay);
  });

  std::cout << "Asynchronous:\n";
  const double async = seconds_taken([&] {
    std::vector<greenev::basic_task> threads;
    for (int pid = 1; pid <= count; ++pid) threads.push_back(greenev::spawn(task, pid, delay));
    greenev::joinall(threads);
  });

  std::printf("sync=%.2fs async=%.2fs\n", sync, async);
  return 0;
}
