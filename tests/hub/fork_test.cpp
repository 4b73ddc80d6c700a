// Tests of greenev/fork.hpp: greenev::fork() and reinit(). Each test forks
// inside a threadsafe death test (a fresh process running only that test),
// so that the process-wide state a fork changes (atfork handlers, a
// threadpool's workers) stays there; that process then checks its own child
// and exits 0 only if every check held. Children are waited for through a
// pidfd with a bound, and killed if they overrun: no process is left.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <greenev/detail/sanitizers.hpp>
#include <greenev/dns.hpp>
#include <greenev/fork.hpp>
#include <greenev/hub.hpp>
#include <greenev/io.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>
#include <greenev/threadpool.hpp>

#include "../support/dns_server.hpp"
#include "../support/sanitizers.hpp"
#include "../support/socket_pair.hpp"
#include "../support/tsan_forked_children.hpp"

namespace {

using namespace std::chrono_literals;

// Waits cooperatively (pidfd + greenev::poll: the caller's hub keeps running)
// for `pid` for up to `timeout`; its exit code, 128 + the signal that killed
// it, or -1 if it overran (then it is killed and reaped).
int wait_child(pid_t pid, double timeout = 20.0) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd entry{pidfd, POLLIN, 0};
    const bool exited = greenev::poll(std::span<pollfd>(&entry, 1), timeout) == 1;
    ::close(pidfd);
    if (!exited) ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

// In the child: runs `check`, then ends the child at once (_exit: no atexit
// handler of the test process runs twice) with 0 if it held, 1 otherwise.
template <class F>
[[noreturn]] void child_exit(F&& check) {
  int code = 1;
  try {
    if (check()) {
      code = 0;
    } else {
      std::fputs("child: a check failed\n", stderr);
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "child: %s\n", error.what());
  }
  std::fflush(stderr);
  ::_exit(code);
}

// Ends the death-test process: 0 if `check` holds, else 1 with a message.
template <class F>
[[noreturn]] void exit_with(F&& check) {
  try {
    if (check()) std::exit(0);
    std::fputs("check failed\n", stderr);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
  }
  std::exit(1);
}

class fork_test : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under TSan the children run with its reports dropped (it cannot follow
    // fiber switches across a fork): support/tsan_forked_children.hpp.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

// Timers, spawn/join and a TCP echo over greenev sockets on loopback, all in
// the child's own hub.
bool hub_works() {
  const auto start = std::chrono::steady_clock::now();
  auto sleepers = greenev::spawn([] { greenev::sleep(0.05); });
  greenev::sleep(0.02);
  sleepers.join();
  if (std::chrono::steady_clock::now() - start < 40ms) return false;
  greenev::socket listener(AF_INET, SOCK_STREAM);
  listener.bind(greenev::address::parse("127.0.0.1", 0));
  listener.listen();
  auto server = greenev::spawn([&listener] {
    auto [conn, peer] = listener.accept();
    for (std::string data = conn.recv(4096); !data.empty(); data = conn.recv(4096)) conn.sendall(data);
  });
  greenev::socket client = greenev::create_connection("127.0.0.1", listener.local_address().port(), 5.0);
  client.sendall("ping");
  std::string echoed;
  while (echoed.size() < 4) echoed += client.recv(16);
  client.close();
  server.join();
  return echoed == "ping";
}

TEST_F(fork_test, the_child_continues_in_the_main_greenlet_with_a_working_hub) {
  EXPECT_EXIT(exit_with([] {
                greenev::testing::socket_pair pair;  // made before the fork, waited on across it
                bool woke = false;
                auto reader = greenev::spawn([&] { woke = greenev::wait_read(pair.fds[0], 10.0); });
                greenev::sleep(0.0);  // the reader waits in the loop now
                int ticks = 0;
                auto ticker = greenev::spawn([&ticks] {
                  for (;;) {
                    greenev::sleep(0.01);
                    ++ticks;
                  }
                });
                const greenev::greenlet self = greenev::greenlet::current();
                const pid_t pid = greenev::fork();
                if (pid == 0) {
                  child_exit([&] {
                    if (greenev::greenlet::current() != self) return false;
                    if (!hub_works()) return false;
                    // The reader copied from the parent still waits here, in the
                    // child's own epoll set.
                    pair.send_byte();
                    reader.join();
                    ticker.kill();
                    return woke && ticks > 0;
                  });
                }
                const int ticks_before = ticks;
                const int code = wait_child(pid);  // the parent's hub runs meanwhile
                const bool parent_ran = ticks > ticks_before || code != 0;
                ticker.kill();
                pair.send_byte();
                reader.join();
                return code == 0 && parent_ran && woke && hub_works();
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(fork_test, a_fork_from_a_spawned_greenlet_continues_in_it) {
  EXPECT_EXIT(exit_with([] {
                auto forker = greenev::spawn([] {
                  const greenev::greenlet self = greenev::greenlet::current();
                  const pid_t pid = greenev::fork();
                  if (pid == 0)
                    child_exit([&] { return greenev::greenlet::current() == self && hub_works(); });
                  return wait_child(pid);
                });
                return forker.get() == 0 && hub_works();
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(fork_test, threadpools_start_new_workers_in_the_child) {
  EXPECT_EXIT(exit_with([] {
                greenev::threadpool workers(2);
                const auto parent_thread = std::this_thread::get_id();
                if (workers.apply([] { return 20; }) != 20) return false;  // a worker exists
                const pid_t pid = greenev::fork();
                if (pid == 0) {
                  child_exit([&] {
                    const int got = workers.apply([] { return 22; });
                    auto later = workers.spawn(
                        [parent_thread] { return std::this_thread::get_id() != parent_thread; });
                    return got == 22 && later.get() && workers.thread_count() >= 1;
                  });
                }
                return wait_child(pid) == 0 && workers.apply([] { return 21; }) == 21;
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(fork_test, a_job_running_at_fork_fails_in_the_child_and_completes_in_the_parent) {
  EXPECT_EXIT(exit_with([] {
                greenev::threadpool workers(1);
                auto started = std::make_shared<std::atomic<bool>>(false);
                auto release = std::make_shared<std::atomic<bool>>(false);
                std::string outcome;
                auto waiter = greenev::spawn([&] {
                  try {
                    outcome = std::to_string(workers.apply([started, release] {
                      started->store(true);
                      while (!release->load()) std::this_thread::sleep_for(1ms);
                      return 7;
                    }));
                  } catch (const greenev::threadpool_closed& error) {
                    outcome = error.what();
                  }
                });
                while (!started->load()) greenev::sleep(0.001);
                const pid_t pid = greenev::fork();
                if (pid == 0) {
                  child_exit([&] {
                    waiter.join();
                    const bool failed = outcome.find("did not survive fork") != std::string::npos;
                    if (!failed) std::fprintf(stderr, "child: the waiter got \"%s\"\n", outcome.c_str());
                    // A queued job after that runs on a new worker.
                    return failed && workers.apply([] { return 3; }) == 3;
                  });
                }
                release->store(true);
                waiter.join();
                return wait_child(pid) == 0 && outcome == "7";
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(fork_test, the_thread_resolver_answers_in_the_child) {
  EXPECT_EXIT(exit_with([] {
                greenev::configure_resolver({.backend = greenev::resolver_backend::thread});
                if (greenev::getaddrinfo("localhost").empty()) return false;  // its workers exist now
                const pid_t pid = greenev::fork();
                if (pid == 0) child_exit([] { return !greenev::getaddrinfo("localhost").empty(); });
                return wait_child(pid) == 0 && !greenev::getaddrinfo("localhost").empty();
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(fork_test, the_ares_resolver_makes_a_channel_of_its_own_in_the_child) {
  if (greenev::testing::dns_server::binary().empty())
    GTEST_SKIP() << "dnsmasq not installed (Debian package dnsmasq-base)";
  EXPECT_EXIT(exit_with([] {
                // Started in this process (it dies with this thread).
                const greenev::testing::dns_server dns("192.0.2.7 forked.greenev.test\n");
                greenev::configure_resolver({.nameservers = {dns.nameserver()}, .timeout = 2.0});
                // The parent's channel and its UDP socket exist before the fork.
                if (greenev::gethostbyname("forked.greenev.test") != "192.0.2.7") return false;
                const pid_t pid = greenev::fork();
                if (pid == 0) {
                  child_exit([] {
                    return greenev::gethostbyname("forked.greenev.test") == "192.0.2.7" &&
                           greenev::gethostbyname("localhost").size() > 0;
                  });
                }
                const int code = wait_child(pid);
                return code == 0 && greenev::gethostbyname("forked.greenev.test") == "192.0.2.7";
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(fork_test, reinit_makes_the_hub_whole_after_a_raw_fork_and_is_idempotent) {
  EXPECT_EXIT(exit_with([] {
                greenev::reinit();  // no fork yet: nothing to do
                greenev::threadpool workers(1);
                (void)workers.apply([] { return 0; });
                const pid_t pid = ::fork();
                if (pid == 0) {
                  child_exit([&] {
                    greenev::reinit();
                    greenev::reinit();  // the second call changes nothing
                    return hub_works() && workers.apply([] { return 5; }) == 5 && workers.thread_count() == 1;
                  });
                }
                return pid > 0 && wait_child(pid) == 0 && hub_works();
              }),
              ::testing::ExitedWithCode(0), "");
}

}  // namespace
