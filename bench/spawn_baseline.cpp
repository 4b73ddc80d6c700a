// spawn_baseline: the floor under greenev's subprocess figures — plain blocking C that starts
// N copies of a command with posix_spawnp (vfork-based in glibc, the cheapest way to start
// a program) as fast as it can, then waitpid()s each. Nothing waits cooperatively, so the
// starts cannot overlap anything but the children themselves. Prints the wall time as
// `result spawn_baseline_wall = X s` and exits non-zero if a start failed or a child did
// not exit 0.
//
//   spawn_baseline --count N -- CMD ARGS...
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  long count = 100;
  int command_at = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (argument == "--count" && i + 1 < argc) {
      count = std::strtol(argv[++i], nullptr, 10);
    } else if (argument == "--") {
      command_at = i + 1;
      break;
    } else {
      std::fprintf(stderr, "usage: spawn_baseline --count N -- CMD ARGS...\n");
      return 2;
    }
  }
  if (command_at == 0 || command_at >= argc || count < 1) {
    std::fprintf(stderr, "usage: spawn_baseline --count N -- CMD ARGS...\n");
    return 2;
  }
  char** command = argv + command_at;
  std::vector<pid_t> children;
  children.reserve(static_cast<std::size_t>(count));
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < count; ++i) {
    pid_t child = 0;
    if (const int error = posix_spawnp(&child, command[0], nullptr, nullptr, command, environ); error != 0) {
      std::fprintf(stderr, "spawn_baseline: %s: %s\n", command[0], std::strerror(error));
      return 1;
    }
    children.push_back(child);
  }
  int failed = 0;
  for (const pid_t child : children) {
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
  std::printf("result spawn_baseline_wall = %.4f s\n", wall.count());
  return failed == 0 ? 0 : 1;
}
