// The proof of interposition: libcurl's blocking easy API, unmodified, run
// by 100 greenlets after patch_all() against a local server that delays each
// answer: they finish in about one delay, not a hundred. (The unpatched twin,
// patch_unpatched_test.cpp, shows the same code running one after another.)
#include <curl/curl.h>
#include <gtest/gtest.h>

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

std::size_t count_bytes(char*, std::size_t size, std::size_t count, void* total) {
  *static_cast<std::size_t*>(total) += size * count;
  return size * count;
}

// Plain libcurl: what any third-party blocking client looks like.
std::size_t fetch(const std::string& url, CURLcode& result) {
  std::size_t bytes = 0;
  CURL* handle = curl_easy_init();
  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, count_bytes);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &bytes);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_TIMEOUT, 30L);
  result = curl_easy_perform(handle);
  curl_easy_cleanup(handle);
  return bytes;
}

class patch_curl_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    greenev::monkey::patch_all();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    hub_test::SetUp();
  }
  void TearDown() override {
    hub_test::TearDown();
    curl_global_cleanup();
  }
};

TEST_F(patch_curl_test, a_hundred_easy_fetches_take_about_one_delay) {
  greenev::testing::delayed_http_server server;
  constexpr int fetches = 100;
  std::vector<greenev::basic_task> tasks;
  std::vector<std::size_t> bytes(fetches);
  std::vector<CURLcode> results(fetches, CURLE_OK);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < fetches; ++i) {
    tasks.push_back(greenev::spawn([&, i] { bytes[i] = fetch(server.url(200, 1000 + i), results[i]); }));
  }
  greenev::joinall(tasks);
  const auto took = since(start);
  for (int i = 0; i < fetches; ++i) {
    EXPECT_EQ(results[i], CURLE_OK) << curl_easy_strerror(results[i]);
    EXPECT_EQ(bytes[i], static_cast<std::size_t>(1000 + i));
  }
  EXPECT_GE(took, 195ms);
  EXPECT_LT(took, 4000ms) << "100 fetches of 200 ms ran (partly) one after another";
}

TEST_F(patch_curl_test, killing_a_fetch_fails_it_in_curl_and_unwinds_the_greenlet) {
  greenev::testing::delayed_http_server server;
  CURLcode result = CURLE_OK;
  bool unwound = false;
  auto fetcher = greenev::spawn([&] {
    struct flag_on_exit {
      bool& flag;
      ~flag_on_exit() { flag = true; }
    } guard{unwound};
    greenev::monkey::blocking_call([&] { fetch(server.url(5000, 10), result); });
  });
  greenev::sleep(0.1);
  const auto start = std::chrono::steady_clock::now();
  fetcher.kill();
  EXPECT_LT(since(start), 1000ms);
  EXPECT_NE(result, CURLE_OK);
  EXPECT_TRUE(unwound);
  EXPECT_TRUE(fetcher.killed());
}

}  // namespace
