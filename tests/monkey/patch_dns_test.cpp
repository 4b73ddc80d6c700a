// patch_dns(): libc's getaddrinfo and gethostbyname family answered by
// greenev's c-ares resolver inside greenlets (cooperatively), by libc on
// threads without a hub. Real dnsmasq on loopback. Each TEST is its own
// process (ctest) and patches at its start.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <greenev/dns.hpp>
#include <greenev/monkey.hpp>
#include <greenev/task.hpp>

#include "support/dns_server.hpp"
#include "support/hub_fixture.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

class patch_dns_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    if (greenev::testing::dns_server::binary().empty()) GTEST_SKIP() << "dnsmasq is not installed";
    greenev::monkey::patch_all();
    hub_test::SetUp();
  }
};

std::vector<std::string> addresses_of(const addrinfo* list) {
  std::vector<std::string> out;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr);
    ::inet_ntop(a->ai_family, raw, text, sizeof text);
    out.emplace_back(text);
  }
  return out;
}

TEST_F(patch_dns_test, getaddrinfo_answers_from_the_configured_server) {
  greenev::testing::dns_server dns("192.0.2.7 alpha.test\n2001:db8::7 alpha.test\n");
  greenev::configure_resolver({.nameservers = {dns.nameserver()}});
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  ASSERT_EQ(::getaddrinfo("alpha.test", "80", &hints, &list), 0);
  EXPECT_EQ(addresses_of(list), std::vector<std::string>{"192.0.2.7"});
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(list->ai_addr)->sin_port), 80);
  EXPECT_EQ(list->ai_socktype, SOCK_STREAM);
  ::freeaddrinfo(list);

  hints.ai_family = AF_INET6;
  ASSERT_EQ(::getaddrinfo("alpha.test", nullptr, &hints, &list), 0);
  EXPECT_EQ(addresses_of(list), std::vector<std::string>{"2001:db8::7"});
  ::freeaddrinfo(list);

  EXPECT_EQ(::getaddrinfo("nosuch.test", nullptr, &hints, &list), EAI_NONAME);
}

TEST_F(patch_dns_test, a_lookup_waiting_on_a_silent_server_lets_other_greenlets_run) {
  greenev::testing::silent_dns_server silent;
  // 1 s: the ticker's five 20 ms sleeps, each woken late on a loaded machine,
  // still end long before the lookups give up.
  greenev::configure_resolver({.nameservers = {silent.nameserver()}, .timeout = 1.0, .tries = 1});
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    for (;;) {
      greenev::sleep(0.02);
      ++ticks;
    }
  });
  std::vector<greenev::basic_task> lookups;
  int again = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    lookups.push_back(greenev::spawn([&, i] {
      addrinfo* list = nullptr;
      const std::string name = "n" + std::to_string(i) + ".test";
      if (::getaddrinfo(name.c_str(), nullptr, nullptr, &list) == EAI_AGAIN) ++again;
    }));
  }
  greenev::joinall(lookups);
  EXPECT_EQ(again, 10);
  EXPECT_LT(since(start), 5000ms) << "the lookups waited one after another";
  EXPECT_GE(ticks, 5) << "the ticker did not run while lookups waited";
  ticker.kill();
}

TEST_F(patch_dns_test, gethostbyname_family) {
  greenev::testing::dns_server dns("192.0.2.8 beta.test\n2001:db8::8 beta.test\n");
  greenev::configure_resolver({.nameservers = {dns.nameserver()}});
  const hostent* entry = ::gethostbyname("beta.test");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->h_addrtype, AF_INET);
  ASSERT_NE(entry->h_addr_list[0], nullptr);
  char text[INET6_ADDRSTRLEN] = {};
  EXPECT_STREQ(::inet_ntop(AF_INET, entry->h_addr_list[0], text, sizeof text), "192.0.2.8");

  entry = ::gethostbyname2("beta.test", AF_INET6);
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->h_length, 16);
  EXPECT_STREQ(::inet_ntop(AF_INET6, entry->h_addr_list[0], text, sizeof text), "2001:db8::8");

  hostent result{};
  hostent* out = nullptr;
  int error = 0;
  char small[8];
  EXPECT_EQ(::gethostbyname_r("beta.test", &result, small, sizeof small, &out, &error), ERANGE);
  char buffer[1024];
  ASSERT_EQ(::gethostbyname_r("beta.test", &result, buffer, sizeof buffer, &out, &error), 0);
  ASSERT_EQ(out, &result);
  EXPECT_STREQ(::inet_ntop(AF_INET, result.h_addr_list[0], text, sizeof text), "192.0.2.8");
  EXPECT_EQ(::gethostbyname_r("nosuch.test", &result, buffer, sizeof buffer, &out, &error), 0);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(error, HOST_NOT_FOUND);

  in_addr a{};
  ::inet_pton(AF_INET, "192.0.2.8", &a);
  entry = ::gethostbyaddr(&a, sizeof a, AF_INET);
  ASSERT_NE(entry, nullptr);
  EXPECT_STREQ(entry->h_name, "beta.test");
}

TEST_F(patch_dns_test, a_thread_without_a_hub_uses_libc) {
  // libc knows "localhost" from /etc/hosts; the thread never touches greenev.
  int result = -1;
  std::thread plain([&] {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* list = nullptr;
    result = ::getaddrinfo("localhost", nullptr, &hints, &list);
    if (result == 0) ::freeaddrinfo(list);
  });
  plain.join();
  EXPECT_EQ(result, 0);
}

TEST_F(patch_dns_test, the_thread_resolver_passes_through_on_its_workers) {
  greenev::configure_resolver({.backend = greenev::resolver_backend::thread});
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* list = nullptr;
  ASSERT_EQ(::getaddrinfo("localhost", nullptr, &hints, &list), 0);
  EXPECT_EQ(addresses_of(list).front(), "127.0.0.1");
  ::freeaddrinfo(list);
}

}  // namespace

namespace {

TEST_F(patch_dns_test, a_kill_during_getaddrinfo_fails_it_and_later_lookups_at_once) {
  greenev::testing::silent_dns_server silent;
  greenev::configure_resolver({.nameservers = {silent.nameserver()}, .timeout = 5.0, .tries = 1});
  int first = 0;
  int first_errno = 0;
  hostent placeholder{};
  const hostent* second = &placeholder;
  auto victim = greenev::spawn([&] {
    greenev::monkey::blocking_call([&] {
      addrinfo* list = nullptr;
      first = ::getaddrinfo("slow.test", nullptr, nullptr, &list);
      first_errno = errno;
      second = ::gethostbyname("slow.test");  // doomed: fails without waiting
    });
  });
  greenev::sleep(0.05);
  const auto start = std::chrono::steady_clock::now();
  victim.kill();
  EXPECT_LT(since(start), 1000ms);
  EXPECT_EQ(first, EAI_SYSTEM);
  EXPECT_EQ(first_errno, ECANCELED);
  EXPECT_EQ(second, nullptr);
  EXPECT_TRUE(victim.killed());
}

}  // namespace

namespace {

TEST_F(patch_dns_test, a_dnsmasq_lookup_switches_while_the_query_is_in_flight) {
  greenev::testing::dns_server dns("192.0.2.9 gamma.test\n");
  greenev::configure_resolver({.nameservers = {dns.nameserver()}});
  int ticks = 0;
  auto ticker = greenev::spawn([&] {
    for (;;) {
      ++ticks;
      greenev::sleep(0.0);
    }
  });
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  ASSERT_EQ(::getaddrinfo("gamma.test", "53", &hints, &list), 0);
  // libc's getaddrinfo would have blocked the thread: the ticker could not have run.
  EXPECT_GE(ticks, 1);
  EXPECT_EQ(addresses_of(list), std::vector<std::string>{"192.0.2.9"});
  ::freeaddrinfo(list);
  ticker.kill();
}

}  // namespace
