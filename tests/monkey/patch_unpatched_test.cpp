// The control for patch_curl_test: the same libcurl code in greenlets
// without patch_*() runs one fetch after another, since the interposers
// (linked in with greenev::monkey) pass every call straight to libc.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <time.h>

#include <chrono>
#include <string>
#include <vector>

#include <greenev/monkey.hpp>
#include <greenev/task.hpp>

#include "patch_http_server.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

std::size_t discard(char*, std::size_t size, std::size_t count, void*) {
  return size * count;
}

class patch_unpatched_test : public greenev::testing::hub_test {};

TEST_F(patch_unpatched_test, without_patching_fetches_in_greenlets_are_sequential) {
  EXPECT_FALSE(greenev::monkey::is_patched(greenev::monkey::patch_target::socket));
  EXPECT_FALSE(greenev::monkey::is_patched("select"));
  curl_global_init(CURL_GLOBAL_DEFAULT);
  greenev::testing::delayed_http_server server;
  std::vector<greenev::basic_task> tasks;
  int ok = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(greenev::spawn([&] {
      CURL* handle = curl_easy_init();
      curl_easy_setopt(handle, CURLOPT_URL, server.url(100, 10).c_str());
      curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, discard);
      curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
      if (curl_easy_perform(handle) == CURLE_OK) ++ok;
      curl_easy_cleanup(handle);
    }));
  }
  greenev::joinall(tasks);
  EXPECT_EQ(ok, 5);
  EXPECT_GE(since(start), 490ms) << "fetches overlapped without patching";
  curl_global_cleanup();
}

TEST_F(patch_unpatched_test, without_patching_sleeps_block_the_thread) {
  bool ran = false;
  auto other = greenev::spawn([&] { ran = true; });
  timespec t{0, 20'000'000};
  EXPECT_EQ(::nanosleep(&t, nullptr), 0);
  EXPECT_FALSE(ran) << "an unpatched nanosleep switched";
  other.join();
}

}  // namespace
