// Socket addresses: one value type for IPv4, IPv6 and Unix-domain endpoints,
// shared by greenev's sockets, servers and resolver.
//
//   auto a = greenev::address::parse("127.0.0.1", 8001);   // numeric only
//   sock.connect(a);
//   std::cout << a.to_string();                            // "127.0.0.1:8001"
//
// Never switches; a plain value, usable from any thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace greenev {

/// An IPv4, IPv6 or Unix-domain socket address: a sockaddr_storage and its
/// length, as a value.
class address {
 public:
  /// An empty address (family AF_UNSPEC).
  address() noexcept = default;

  /// Copies `length` bytes of `raw`. Throws std::invalid_argument if `length`
  /// exceeds sockaddr_storage.
  address(const sockaddr* raw, socklen_t length);

  /// A numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "fe80::1%lo") and a
  /// port. Throws std::invalid_argument naming `host` if it is not numeric:
  /// names are resolved by greenev::getaddrinfo (dns.hpp), never here.
  [[nodiscard]] static address parse(std::string_view host, std::uint16_t port);

  /// A Unix-domain path; a leading '@' means the abstract namespace. Throws
  /// std::invalid_argument if the path does not fit sockaddr_un.
  [[nodiscard]] static address unix_path(std::string_view path);

  /// AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC.
  [[nodiscard]] int family() const noexcept { return storage_.ss_family; }
  /// The port (0 for Unix and empty addresses).
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// The numeric host ("127.0.0.1", "::1") or the Unix path; "" if empty.
  [[nodiscard]] std::string host() const;
  /// "127.0.0.1:8001", "[::1]:8001", the Unix path, or "" if empty.
  [[nodiscard]] std::string to_string() const;

  /// The raw address and its length, for system calls.
  ///@{
  [[nodiscard]] const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  [[nodiscard]] sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  [[nodiscard]] socklen_t size() const noexcept { return length_; }
  ///@}
  /// Room for any address, for calls that fill one in (accept, recvfrom).
  [[nodiscard]] static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }
  /// Sets the length after a call filled data() in.
  void resize(socklen_t length);

  /// Byte-wise equality of the two addresses.
  friend bool operator==(const address& a, const address& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

}  // namespace greenev
