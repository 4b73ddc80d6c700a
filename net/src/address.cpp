// Socket addresses: parsing and printing without any name lookup.
#include <greenev/address.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>
#include <stdexcept>

namespace greenev {

address::address(const sockaddr* raw, socklen_t length) {
  resize(length);
  std::memcpy(&storage_, raw, length);
}

void address::resize(socklen_t length) {
  if (length > sizeof storage_) {
    throw std::invalid_argument("greenev: a socket address of " + std::to_string(length) + " bytes");
  }
  length_ = length;
}

address address::parse(std::string_view host, std::uint16_t port) {
  const std::string text(host);
  address result;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&result.storage_);
  if (::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    result.length_ = sizeof(sockaddr_in);
    return result;
  }
  // IPv6, with an optional "%scope" (interface name or number).
  const std::string::size_type percent = text.find('%');
  const std::string ip = text.substr(0, percent);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&result.storage_);
  if (::inet_pton(AF_INET6, ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    if (percent != std::string::npos) {
      const std::string scope = text.substr(percent + 1);
      unsigned index = ::if_nametoindex(scope.c_str());
      if (index == 0 && !scope.empty() && scope.find_first_not_of("0123456789") == std::string::npos) {
        index = static_cast<unsigned>(std::stoul(scope));
      }
      if (index == 0) throw std::invalid_argument("greenev: unknown IPv6 scope in address \"" + text + "\"");
      v6->sin6_scope_id = index;
    }
    result.length_ = sizeof(sockaddr_in6);
    return result;
  }
  throw std::invalid_argument("greenev: \"" + text +
                              "\" is not a numeric IP address (resolve names with greenev::getaddrinfo)");
}

address address::unix_path(std::string_view path) {
  address result;
  auto* un = reinterpret_cast<sockaddr_un*>(&result.storage_);
  if (path.empty() || path.size() >= sizeof un->sun_path) {
    throw std::invalid_argument("greenev: Unix socket path \"" + std::string(path) +
                                "\" is empty or longer than " + std::to_string(sizeof un->sun_path - 1) +
                                " bytes");
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  if (path.front() == '@') {
    un->sun_path[0] = '\0';  // abstract: the name is exactly these bytes, no terminator
  } else {
    length += 1;
  }
  result.length_ = length;
  return result;
}

std::uint16_t address::port() const noexcept {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
    default:
      return 0;
  }
}

std::string address::host() const {
  char text[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET:
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text, sizeof text);
      return text;
    case AF_INET6:
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text, sizeof text);
      return text;
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
      const std::size_t offset = offsetof(sockaddr_un, sun_path);
      if (length_ <= offset) return "";  // unnamed
      std::string path(un->sun_path, length_ - offset);
      if (path.front() == '\0') {
        path.front() = '@';
      } else if (const auto end = path.find('\0'); end != std::string::npos) {
        path.resize(end);
      }
      return path;
    }
    default:
      return "";
  }
}

std::string address::to_string() const {
  switch (family()) {
    case AF_INET:
      return host() + ":" + std::to_string(port());
    case AF_INET6: {
      // Appended piecewise: GCC 12 at -O3 misreports "[" + host() as an overlapping memcpy (-Wrestrict).
      std::string text = "[";
      text.append(host()).append("]:").append(std::to_string(port()));
      return text;
    }
    default:
      return host();
  }
}

bool operator==(const address& a, const address& b) noexcept {
  return a.length_ == b.length_ && std::memcmp(&a.storage_, &b.storage_, a.length_) == 0;
}

}  // namespace greenev
