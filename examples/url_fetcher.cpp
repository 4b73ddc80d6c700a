// Unmodified libcurl fetches, one by one, then concurrently in greenlets after patch_all().
//
// The python original: monkey.patch_all(); gevent.joinall([gevent.spawn(f, url) ...]) where
// f prints "GET:url", reads urlopen(url) and prints "N bytes received from url". Here fetch()
// is plain blocking libcurl. With no URL, a greenev HTTP server on its own thread serves
// --count pages on 127.0.0.1, each after --delay seconds. Last line: sync=X.XXs async=Y.YYs.
#include <curl/curl.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <greenev/greenev.hpp>

namespace {

std::size_t count_bytes(char*, std::size_t size, std::size_t n, void* total) {
  *static_cast<std::size_t*>(total) += size * n;
  return size * n;
}

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
  } else {
    std::printf("%zu bytes received from %s\n", bytes, url.c_str());
  }
  curl_easy_cleanup(curl);
}

// The offline demo's server: GET /<n> answers n*100 bytes after `delay` seconds. It runs
// on its own thread and hub, since the sync run blocks this thread inside libcurl.
class local_server {
 public:
  explicit local_server(double delay) : thread_([this, delay] { run(delay); }) {
    port_ = port_promise_.get_future().get();
  }
  ~local_server() {
    hub_->run_callback_threadsafe([this] { stopper_ = greenev::spawn([this] { server_->stop(1.0); }); });
    thread_.join();
  }
  [[nodiscard]] std::string url(int page) const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(page);
  }

 private:
  void run(double delay) {
    hub_ = &greenev::hub::current();
    greenev::stream_server server(greenev::address::parse("127.0.0.1", 0), [delay](greenev::socket& conn,
                                                                                   const greenev::address&) {
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        const std::string more = conn.recv(4096);
        if (more.empty()) return;
        request += more;
      }
      int page = 0;
      std::sscanf(request.c_str(), "GET /%d", &page);
      greenev::sleep(delay);
      conn.sendall("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(page * 100) +
                   "\r\nConnection: close\r\n\r\n" + std::string(static_cast<std::size_t>(page) * 100, 'x'));
    });
    server_ = &server;
    server.start();
    port_promise_.set_value(server.local_address().port());
    server.serve_forever();
    stopper_.join();
  }
  std::promise<int> port_promise_;
  int port_ = 0;
  greenev::hub* hub_ = nullptr;
  greenev::stream_server* server_ = nullptr;
  greenev::basic_task stopper_;
  std::thread thread_;  // last: starts once the members above exist
};

template <class F>
double seconds_taken(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "both";
  int count = 10;
  double delay = 0.2;
  std::vector<std::string> urls;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if ((arg == "--mode" || arg == "--count" || arg == "--delay") && i + 1 < argc) {
        const std::string value = argv[++i];
        (arg == "--mode"    ? (void)(mode = value)
         : arg == "--count" ? (void)(count = std::stoi(value))
                            : (void)(delay = std::stod(value)));
      } else if (arg.starts_with("-")) {
        throw std::invalid_argument(arg);
      } else {
        urls.push_back(arg);
      }
    }
    if (mode != "sync" && mode != "async" && mode != "both") throw std::invalid_argument(mode);
    if (count < 1 || count > 10000 || delay < 0 || delay > 60) throw std::invalid_argument("range");
  } catch (const std::exception& e) {
    std::cerr << "url_fetcher: bad argument " << e.what()
              << "\nusage: url_fetcher [--mode sync|async|both] [--count N] [--delay SECONDS] [URL...]\n";
    return 2;
  }

  std::unique_ptr<local_server> server;
  if (urls.empty()) {
    server = std::make_unique<local_server>(delay);
    for (int i = 1; i <= count; ++i) urls.push_back(server->url(i));
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  char sync_time[32] = "";
  char async_time[32] = "";
  if (mode != "async") {
    const double sync = seconds_taken([&] {
      for (const std::string& url : urls) fetch(url);
    });
    std::snprintf(sync_time, sizeof sync_time, "sync=%.2fs", sync);
  }
  if (mode != "sync") {
    greenev::monkey::patch_all();  // from here on, libcurl's blocking calls park only their greenlet
    const double async = seconds_taken([&] {
      std::vector<greenev::basic_task> tasks;
      for (const std::string& url : urls) tasks.push_back(greenev::spawn(fetch, url));
      greenev::joinall(tasks);
    });
    std::snprintf(async_time, sizeof async_time, "async=%.2fs", async);
  }
  curl_global_cleanup();
  std::printf("%s%s%s\n", sync_time, *sync_time != 0 && *async_time != 0 ? " " : "", async_time);
  return 0;
}
