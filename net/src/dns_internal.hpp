// Private to the resolver (dns.cpp, dns_ares.cpp, dns_thread.cpp): what the
// front end shares with its two backends. No c-ares type appears here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <greenev/dns.hpp>

namespace greenev::detail::dns {

/// The configuration and a number that changes with every configure_resolver().
struct settings {
  resolver_options options;
  std::uint64_t generation = 0;
};

/// The current settings (reads the environment on first use). Throws
/// std::invalid_argument for a malformed environment variable.
settings current_settings();

/// Throws resolver_error(eai_code, failure) naming `host`.
[[noreturn]] void fail(int eai_code, resolver_failure failure, std::string_view host,
                       const std::string& detail);

/// A name and its addresses, the first step of getaddrinfo before the
/// socket types are multiplied in.
struct resolved_host {
  std::vector<greenev::address> addresses;  // port 0
  std::string canonical_name;               // only when AI_CANONNAME was asked for
};

// The ares backend (dns_ares.cpp). Each switches while its query is in
// flight and throws resolver_error. `host` is not numeric and not empty.
resolved_host ares_resolve(const std::string& host, int family, int flags, const settings& config);
host_entry ares_host_by_name(const std::string& name, const settings& config);
host_entry ares_host_by_address(const greenev::address& ip, const std::string& text, const settings& config);
std::pair<std::string, std::string> ares_name_info(const greenev::address& a, int flags,
                                                   const settings& config);

// The thread backend (dns_thread.cpp): libc on a worker of the calling
// thread's resolver threadpool. Switches; throws resolver_error.
std::vector<address_info> thread_getaddrinfo(const std::string& host, const std::string& service,
                                             const addrinfo_hints& hints);
host_entry thread_host_by_name(const std::string& name);
host_entry thread_host_by_address(const greenev::address& ip, const std::string& text);
std::pair<std::string, std::string> thread_name_info(const greenev::address& a, int flags);

}  // namespace greenev::detail::dns
