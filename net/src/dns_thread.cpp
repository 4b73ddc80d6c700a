// The thread backend: libc's own resolver functions, each call run on a
// worker of the calling thread's resolver threadpool while the caller's
// greenlet waits. Exact libc answers (nsswitch, resolv.conf options), at the
// price of a blocked worker per lookup in flight.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <greenev/detail/thread_service.hpp>
#include <greenev/threadpool.hpp>

#include "dns_internal.hpp"

namespace greenev::detail::dns {

namespace {

// As many lookups at once as gevent's default threadpool runs.
constexpr std::size_t resolver_threads = 10;

// A service of the thread's runtime: destroyed after the thread's greenlets
// were unwound, so a worker stuck in getaddrinfo (a dead nameserver) is let
// go rather than joined, and the thread exits at once.
struct thread_pool_service : greenev::detail::thread_service {
  greenev::threadpool pool{resolver_threads};
};

greenev::threadpool& pool() {
  return greenev::detail::thread_service_of<thread_pool_service>().pool;
}

[[noreturn]] void fail_eai(int code, int saved_errno, const std::string& host) {
  switch (code) {
    case EAI_NONAME:
      fail(code, resolver_failure::not_found, host, ::gai_strerror(code));
    case EAI_NODATA:
      fail(code, resolver_failure::no_data, host, ::gai_strerror(code));
    case EAI_AGAIN:  // libc says this for timeouts (and for SERVFAIL)
      fail(code, resolver_failure::timeout, host, ::gai_strerror(code));
    case EAI_SERVICE:
      fail(code, resolver_failure::bad_service, host, ::gai_strerror(code));
    case EAI_FAMILY:
    case EAI_ADDRFAMILY:
    case EAI_BADFLAGS:
    case EAI_SOCKTYPE:
      fail(code, resolver_failure::bad_input, host, ::gai_strerror(code));
    case EAI_MEMORY:
      fail(code, resolver_failure::system, host, ::gai_strerror(code));
    case EAI_SYSTEM:
      fail(code, resolver_failure::system, host, std::strerror(saved_errno));
    default:
      fail(code, resolver_failure::server_failure, host, ::gai_strerror(code));
  }
}

// gethostbyname_r and friends report through h_errno values.
[[noreturn]] void fail_h_errno(int h_error, int saved_errno, const std::string& host, bool reverse) {
  switch (h_error) {
    case HOST_NOT_FOUND:
      fail(EAI_NONAME, resolver_failure::not_found, host,
           reverse ? "no name for this address" : "no such host");
    case NO_DATA:
      fail(EAI_NODATA, resolver_failure::no_data, host, "the name has no IPv4 address");
    case TRY_AGAIN:
      fail(EAI_AGAIN, resolver_failure::timeout, host, "temporary failure in name resolution");
    case NO_RECOVERY:
      fail(EAI_FAIL, resolver_failure::server_failure, host, "non-recoverable failure in name resolution");
    default:
      fail(EAI_SYSTEM, resolver_failure::system, host, std::strerror(saved_errno));
  }
}

host_entry to_entry(const hostent& host) {
  host_entry entry;
  if (host.h_name != nullptr) entry.name = host.h_name;
  for (char** alias = host.h_aliases; alias != nullptr && *alias != nullptr; ++alias)
    entry.aliases.emplace_back(*alias);
  char text[INET6_ADDRSTRLEN] = {};
  for (char** raw = host.h_addr_list; raw != nullptr && *raw != nullptr; ++raw) {
    if (::inet_ntop(host.h_addrtype, *raw, text, sizeof text) != nullptr) entry.addresses.emplace_back(text);
  }
  return entry;
}

// Calls a *_r function with a buffer that grows while it says ERANGE.
template <class Call>
host_entry with_buffer(const std::string& host, bool reverse, Call call) {
  std::vector<char> buffer(1024);
  for (;;) {
    hostent entry{};
    hostent* result = nullptr;
    int h_error = 0;
    const int rc = call(&entry, buffer.data(), buffer.size(), &result, &h_error);
    if (rc == ERANGE && buffer.size() < (1u << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc != 0 || result == nullptr) fail_h_errno(h_error, rc != 0 ? rc : errno, host, reverse);
    return to_entry(*result);
  }
}

}  // namespace

std::vector<address_info> thread_getaddrinfo(const std::string& host, const std::string& service,
                                             const addrinfo_hints& hints) {
  return pool().apply([host, service, hints] {
    addrinfo wanted{};
    wanted.ai_family = hints.family;
    wanted.ai_socktype = hints.socktype;
    wanted.ai_protocol = hints.protocol;
    wanted.ai_flags = hints.flags;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                 service.empty() ? nullptr : service.c_str(), &wanted, &found);
    if (rc != 0) fail_eai(rc, errno, host);
    const std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(found, ::freeaddrinfo);
    std::vector<address_info> results;
    for (const addrinfo* info = found; info != nullptr; info = info->ai_next) {
      results.push_back({info->ai_family, info->ai_socktype, info->ai_protocol,
                         address(info->ai_addr, info->ai_addrlen),
                         info->ai_canonname != nullptr ? info->ai_canonname : ""});
    }
    return results;
  });
}

host_entry thread_host_by_name(const std::string& name) {
  return pool().apply([name] {
    return with_buffer(name, false,
                       [&](hostent* entry, char* buffer, std::size_t size, hostent** result, int* h_error) {
                         return ::gethostbyname_r(name.c_str(), entry, buffer, size, result, h_error);
                       });
  });
}

host_entry thread_host_by_address(const address& ip, const std::string& text) {
  return pool().apply([ip, text] {
    return with_buffer(
        text, true, [&](hostent* entry, char* buffer, std::size_t size, hostent** result, int* h_error) {
          if (ip.family() == AF_INET) {
            const auto& raw = reinterpret_cast<const sockaddr_in*>(ip.data())->sin_addr;
            return ::gethostbyaddr_r(&raw, sizeof raw, AF_INET, entry, buffer, size, result, h_error);
          }
          const auto& raw = reinterpret_cast<const sockaddr_in6*>(ip.data())->sin6_addr;
          return ::gethostbyaddr_r(&raw, sizeof raw, AF_INET6, entry, buffer, size, result, h_error);
        });
  });
}

std::pair<std::string, std::string> thread_name_info(const address& a, int flags) {
  return pool().apply([a, flags] {
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    const int rc = ::getnameinfo(a.data(), a.size(), host, sizeof host, service, sizeof service, flags);
    if (rc != 0) fail_eai(rc, errno, a.to_string());
    return std::pair<std::string, std::string>(host, service);
  });
}

}  // namespace greenev::detail::dns
