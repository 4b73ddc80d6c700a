// Tests of stream_server_options::processes (pre-fork serving, server.hpp).
// Each test runs in a threadsafe death test: a fresh process that is the
// supervising parent, whose children die with it (SIGTERM on the parent's
// death) and are stopped and reaped by the test on every path it controls.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include <greenev/detail/sanitizers.hpp>
#include <greenev/server.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>

#include "../support/tsan_forked_children.hpp"

namespace {

using namespace std::chrono_literals;

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

// The handler: answers with the pid of the process that accepted.
void answer_pid(greenev::socket& conn, const greenev::address&) {
  conn.sendall(std::to_string(::getpid()));
}

// One short connection: the serving child's pid, or 0 if the connection
// failed (refused, reset, or closed before any answer).
pid_t ask(std::uint16_t port) {
  try {
    greenev::socket conn = greenev::create_connection("127.0.0.1", port, 5.0);
    conn.set_timeout(5.0);
    std::string text;
    for (std::string part = conn.recv(64); !part.empty(); part = conn.recv(64)) text += part;
    return text.empty() ? 0 : static_cast<pid_t>(std::stol(text));
  } catch (const std::system_error&) {
    return 0;
  }
}

bool gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

class prefork_test : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(prefork_test, the_children_serve_every_connection_and_stop_reaps_them) {
  EXPECT_EXIT(exit_with([] {
                greenev::stream_server server(greenev::address::parse("127.0.0.1", 0), answer_pid,
                                              {.processes = 3});
                server.start();
                const std::vector<pid_t> children = server.child_pids();
                if (children.size() != 3) return false;
                const std::uint16_t port = server.local_address().port();
                std::vector<greenev::task<pid_t>> clients;
                for (int i = 0; i < 60; ++i) clients.push_back(greenev::spawn(ask, port));
                std::set<pid_t> served;
                for (auto& client : clients) {
                  const pid_t pid = client.get();
                  if (std::find(children.begin(), children.end(), pid) == children.end()) {
                    std::fprintf(stderr, "a connection was answered by %d\n", static_cast<int>(pid));
                    return false;
                  }
                  served.insert(pid);
                }
                if (server.accepted() != 0) return false;  // the parent accepts nothing
                server.stop(5.0);
                return server.child_pids().empty() && std::all_of(children.begin(), children.end(), gone);
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(prefork_test, a_killed_child_is_replaced_and_no_client_fails) {
  EXPECT_EXIT(exit_with([] {
                greenev::stream_server server(greenev::address::parse("127.0.0.1", 0), answer_pid,
                                              {.processes = 2});
                server.start();
                const std::uint16_t port = server.local_address().port();
                const pid_t victim = server.child_pids().front();
                const pid_t survivor = server.child_pids().back();
                // Load: short connections from 8 greenlets. A connection the
                // killed child had accepted is lost with it (the client sees a
                // reset or an end without an answer) and retried once; one
                // waiting in the shared listener's backlog is accepted by the
                // other child. Every connection must end answered.
                bool loading = true;
                int answered = 0;
                int failed = 0;
                std::vector<greenev::basic_task> load;
                for (int i = 0; i < 8; ++i) {
                  load.push_back(greenev::spawn([&] {
                    while (loading) {
                      if (ask(port) != 0 || ask(port) != 0) {
                        ++answered;
                      } else {
                        ++failed;
                      }
                    }
                  }));
                }
                // Each pause also waits for 10 more answers (10 s at most):
                // a stalled run may sleep through it with no load served.
                const auto load_for = [&](double seconds) {
                  const int target = answered + 10;
                  greenev::sleep(seconds);
                  const auto deadline = std::chrono::steady_clock::now() + 10s;
                  while (answered < target && std::chrono::steady_clock::now() < deadline)
                    greenev::sleep(0.01);
                };
                load_for(0.1);
                ::kill(victim, SIGKILL);
                pid_t replacement = 0;
                const auto deadline = std::chrono::steady_clock::now() + 10s;
                while (replacement == 0 && std::chrono::steady_clock::now() < deadline) {
                  greenev::sleep(0.02);
                  for (pid_t pid : server.child_pids())
                    if (pid != victim && pid != survivor) replacement = pid;
                }
                load_for(0.2);  // the replacement serves under the load too
                loading = false;
                greenev::joinall(load);
                const int before_stop = answered;
                server.stop(5.0);
                if (failed != 0 || replacement == 0 || before_stop < 20) {
                  std::fprintf(stderr, "failed %d, answered %d, replacement %d\n", failed, before_stop,
                               static_cast<int>(replacement));
                  return false;
                }
                return gone(victim) && gone(replacement);
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(prefork_test, sigterm_to_the_parent_stops_every_child_and_serve_forever_returns) {
  EXPECT_EXIT(exit_with([] {
                greenev::stream_server server(greenev::address::parse("127.0.0.1", 0), answer_pid,
                                              {.processes = 2});
                server.start();
                const std::vector<pid_t> children = server.child_pids();
                if (ask(server.local_address().port()) == 0) return false;
                auto signaller = greenev::spawn([] {
                  greenev::sleep(0.1);
                  ::kill(::getpid(), SIGTERM);
                });
                const auto start = std::chrono::steady_clock::now();
                server.serve_forever();  // returns once every child exited
                signaller.join();
                const bool quick = std::chrono::steady_clock::now() - start < 5s;
                return quick && server.stopped() && std::all_of(children.begin(), children.end(), gone);
              }),
              ::testing::ExitedWithCode(0), "");
}

TEST_F(prefork_test, bad_process_counts_are_refused) {
  const auto local = greenev::address::parse("127.0.0.1", 0);
  EXPECT_THROW(greenev::stream_server(local, answer_pid, {.processes = 0}), std::invalid_argument);
  greenev::socket listener(AF_INET, SOCK_STREAM);
  listener.bind(local);
  listener.listen();
  EXPECT_THROW(greenev::stream_server(std::move(listener), answer_pid, {.processes = 2}),
               std::invalid_argument);
}

}  // namespace
