// Ten greenlets each sleep 0.2 s at the same time: the batch takes 0.2 s, not 2 s.
#include <greenev/greenev.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

int main() {
  const auto start = std::chrono::steady_clock::now();
  std::vector<greenev::basic_task> tasks;
  for (int id = 0; id < 10; ++id) {
    tasks.push_back(greenev::spawn(
        [](int n) {
          greenev::sleep(0.2);  // blocks only this greenlet; the hub runs the others
          std::printf("task %d done\n", n);
        },
        id));
  }
  greenev::joinall(tasks);  // main waits cooperatively too
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("10 x sleep(0.2) took %.2f s (greenev %s)\n", took.count(), GREENEV_VERSION_STRING);
  return took.count() < 1.0 ? 0 : 1;
}
