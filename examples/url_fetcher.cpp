// Unmodified libcurl fetches, one by one, then concurrently in greenlets after patch_all().
//
// The python original: monkey.patch_all(); gevent.joinall([gevent.spawn(f, url) ...]) where
// f prints "GET:url", reads urlopen(url) and prints "N bytes received from url". Here fetch()
// is plain blocking libcurl: run one URL after another on a plain thread, then one greenlet
// per URL. With no URL, this thread's hub serves --count pages on 127.0.0.1, each after
// --delay seconds. Last line: sync=X.XXs async=Y.YYs; the exit status is 1 if any fetch failed.
#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>
#include <greenev/monkey.hpp>
#include <greenev/server.hpp>
#include <greenev/socket.hpp>
#include <greenev/task.hpp>
#include <greenev/threadpool.hpp>

#include "command_line.hpp"

namespace {

std::size_t count_bytes(char*, std::size_t size, std::size_t n, void* total) {
  *static_cast<std::size_t*>(total) += size * n;
  return size * n;
}

std::atomic<int> failures{0};  // fetches that failed, over both modes (the sync one runs on a thread)

void fetch(const std::string& url) {  // knows nothing of greenev
  std::printf("GET: %s\n", url.c_str());
  std::size_t bytes = 0;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, count_bytes);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &bytes);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (const CURLcode failed = curl_easy_perform(curl)) {
    std::printf("%s failed: %s\n", url.c_str(), curl_easy_strerror(failed));
    ++failures;
  } else {
    std::printf("%zu bytes received from %s\n", bytes, url.c_str());
  }
  curl_easy_cleanup(curl);
}

// The offline demo's pages: GET /<n> answers n*100 bytes after `delay` seconds.
void serve_page(greenev::socket& conn, double delay) {
  std::string request;
  while (request.find("\r\n\r\n") == std::string::npos) {
    const std::string more = conn.recv(4096);
    if (more.empty()) return;
    request += more;
  }
  int page = 0;
  std::sscanf(request.c_str(), "GET /%d", &page);
  greenev::sleep(delay);
  const std::string body(static_cast<std::size_t>(page) * 100, 'x');
  conn.sendall("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
               "\r\nConnection: close\r\n\r\n" + body);
}

template <class F>
double seconds_taken(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

constexpr std::string_view usage_text =
    "usage: url_fetcher [--mode sync|async|both] [--count N] [--delay SECONDS] [URL...]\n"
    "  --count 1..10000 pages and --delay 0..60 seconds apply to the local server (no URL)\n";

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "both";
  long count = 10;
  double delay = 0.2;
  std::vector<std::string> urls;
  examples::command_line options("url_fetcher", std::string(usage_text));
  options.choice("--mode", mode, {"sync", "async", "both"});
  options.integer("--count", count, 1, 10000);
  options.number("--delay", delay, 0, 60);
  options.positional(urls);
  if (const auto status = options.parse(argc, argv)) return *status;

  // libcurl's blocking calls now park only their greenlet; a plain thread's stay plain.
  greenev::monkey::patch_all();
  std::unique_ptr<greenev::stream_server> server;  // with no URL: local pages, served by this hub
  if (urls.empty()) {
    server = std::make_unique<greenev::stream_server>(
        greenev::address::parse("127.0.0.1", 0),
        [delay](greenev::socket& conn, const greenev::address&) { serve_page(conn, delay); });
    server->start();
    const std::string base = "http://127.0.0.1:" + std::to_string(server->local_address().port()) + "/";
    for (int i = 1; i <= static_cast<int>(count); ++i) urls.push_back(base + std::to_string(i));
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  char sync_time[32] = "";
  char async_time[32] = "";
  if (mode != "async") {  // one by one, on a plain thread (this one keeps serving meanwhile)
    greenev::threadpool plain_thread(1);
    const double sync = seconds_taken([&] {
      plain_thread.apply([&] {
        for (const std::string& url : urls) fetch(url);
      });
    });
    std::snprintf(sync_time, sizeof sync_time, "sync=%.2fs", sync);
  }
  if (mode != "sync") {  // all at once, one greenlet each
    const double async = seconds_taken([&] {
      std::vector<greenev::basic_task> tasks;
      for (const std::string& url : urls) tasks.push_back(greenev::spawn(fetch, url));
      greenev::joinall(tasks);
    });
    std::snprintf(async_time, sizeof async_time, "async=%.2fs", async);
  }
  curl_global_cleanup();
  std::printf("%s%s%s\n", sync_time, *sync_time != 0 && *async_time != 0 ? " " : "", async_time);
  if (server) server->stop(1.0);
  if (failures == 0) return 0;
  std::fflush(stdout);  // the summary comes after the per-URL lines
  std::fprintf(stderr, "url_fetcher: %d fetch(es) failed\n", failures.load());
  return 1;
}
