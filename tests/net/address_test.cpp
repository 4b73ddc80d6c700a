// Tests for greenev/address.hpp: numeric IPv4/IPv6 parsing with ports and
// scopes, Unix paths (filesystem and abstract), printing, equality, and the
// errors for names and oversized input.
#include <greenev/address.hpp>

#include <netinet/in.h>
#include <sys/un.h>

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "support/assertions.hpp"

namespace {

using greenev::address;
using greenev::testing::throws_with;

TEST(address, ipv4_round_trips) {
  const address a = address::parse("127.0.0.1", 8001);
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.port(), 8001);
  EXPECT_EQ(a.host(), "127.0.0.1");
  EXPECT_EQ(a.to_string(), "127.0.0.1:8001");
  EXPECT_EQ(a.size(), sizeof(sockaddr_in));
  EXPECT_EQ(address(a.data(), a.size()), a);
}

TEST(address, ipv6_prints_in_brackets) {
  const address a = address::parse("::1", 443);
  EXPECT_EQ(a.family(), AF_INET6);
  EXPECT_EQ(a.to_string(), "[::1]:443");
  EXPECT_NE(a, address::parse("::1", 444));
}

TEST(address, ipv6_scope_by_interface_name_or_number) {
  const address by_name = address::parse("fe80::1%lo", 1);
  EXPECT_NE(reinterpret_cast<const sockaddr_in6*>(by_name.data())->sin6_scope_id, 0u);
  const address by_number = address::parse("fe80::1%7", 1);
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(by_number.data())->sin6_scope_id, 7u);
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)address::parse("fe80::1%nosuchif0", 1); },
                                                 "unknown IPv6 scope"));
}

TEST(address, names_are_refused_with_a_pointer_to_the_resolver) {
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)address::parse("localhost", 80); },
                                                 "\"localhost\" is not a numeric IP address"));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)address::parse("", 80); }, "not a numeric"));
}

TEST(address, unix_paths_filesystem_and_abstract) {
  const address file = address::unix_path("/tmp/greenev.sock");
  EXPECT_EQ(file.family(), AF_UNIX);
  EXPECT_EQ(file.to_string(), "/tmp/greenev.sock");
  EXPECT_EQ(file.port(), 0);
  const address abstract = address::unix_path("@greenev-test");
  EXPECT_EQ(abstract.to_string(), "@greenev-test");
  EXPECT_EQ(abstract.data()->sa_data[0], '\0');
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)address::unix_path(std::string(200, 'x')); },
                                                 "longer than"));
  EXPECT_TRUE(throws_with<std::invalid_argument>([] { (void)address::unix_path(""); }, "empty"));
}

TEST(address, empty_and_oversized) {
  const address empty;
  EXPECT_EQ(empty.family(), AF_UNSPEC);
  EXPECT_EQ(empty.to_string(), "");
  sockaddr_storage big{};
  EXPECT_TRUE(throws_with<std::invalid_argument>(
      [&] { address(reinterpret_cast<sockaddr*>(&big), sizeof big + 1); }, "bytes"));
}

}  // namespace
