// What each greenlet is doing: run info for three waiting greenlets, and a pause for a debugger.
//
//   run_info           prints the run info (a sleeper, a socket reader, an event waiter)
//   run_info --trap    then raises SIGTRAP: under gdb, `gcore` makes a core file for
//                      tools/greenev-gdb.py (greenev-list, greenev-bt N)
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string_view>

#include <greenev/event.hpp>
#include <greenev/hub.hpp>
#include <greenev/io.hpp>
#include <greenev/run_info.hpp>
#include <greenev/task.hpp>

int main(int argc, char** argv) {
  const bool trap = argc > 1 && std::string_view(argv[1]) == "--trap";
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 1;
  greenev::event never_set;
  auto sleeper = greenev::spawn_with({.name = "sleeper"}, [] { greenev::sleep(60.0); });
  auto reader = greenev::spawn_with({.name = "socket-reader"}, [&] { (void)greenev::wait_read(fds[0]); });
  auto waiter = greenev::spawn_with({.name = "event-waiter"}, [&] { (void)never_set.wait(); });
  greenev::sleep(0.05);  // all three start and park
  greenev::print_run_info();
  if (trap) std::raise(SIGTRAP);
  greenev::killall({sleeper, reader, waiter});
  ::close(fds[0]);
  ::close(fds[1]);
  return 0;
}
