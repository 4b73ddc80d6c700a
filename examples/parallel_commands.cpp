// Runs N copies of one command at once, each waited for cooperatively: gevent.subprocess.
//
//   parallel_commands --count 10 -- sleep 1     # about 1 s, not 10
//
// Prints each copy's exit status as it finishes, then `commands=N failed=F wall=X.XXs`;
// exits 1 if any copy failed (non-zero status, or it could not be started).
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <greenev/subprocess.hpp>
#include <greenev/task.hpp>

#include "command_line.hpp"

int main(int argc, char** argv) {
  long count = 10;
  std::vector<std::string> command;
  examples::command_line options(
      "parallel_commands", "usage: parallel_commands [--count N] -- COMMAND [ARGS...]  (N default 10)\n");
  options.integer("--count", count, 1, 100000);
  options.rest(command);
  if (const auto status = options.parse(argc, argv)) return *status;
  if (command.empty()) {
    std::fprintf(stderr, "parallel_commands: no command after --\n\n%s",
                 "usage: parallel_commands [--count N] -- COMMAND [ARGS...]  (N default 10)\n");
    return 2;
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<greenev::task<bool>> copies;
  for (long i = 0; i < count; ++i) {
    copies.push_back(greenev::spawn([&command, i] {
      try {
        greenev::subprocess child(command);  // the others start and run meanwhile
        const int status = child.wait();
        std::printf("copy %ld: exit %d\n", i + 1, status);
        return status == 0;
      } catch (const std::exception& error) {
        std::printf("copy %ld: %s\n", i + 1, error.what());
        return false;
      }
    }));
  }
  long failed = 0;
  for (auto& copy : copies) failed += copy.get() ? 0 : 1;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("commands=%ld failed=%ld wall=%.2fs\n", count, failed, wall);
  return failed == 0 ? 0 : 1;
}
