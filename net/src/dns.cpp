// The resolver's front end: configuration, errors, input checks, numeric
// hosts and services (answered here, without any network), and the choice
// of backend (dns_ares.cpp or dns_thread.cpp).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "dns_internal.hpp"

namespace greenev {

namespace {

using detail::dns::fail;
using detail::dns::settings;

// ---- configuration ----------------------------------------------------------

struct configuration {
  std::mutex mutex;
  std::optional<resolver_options> options;  // guarded by mutex; empty until first needed
  std::uint64_t generation = 0;             // guarded by mutex
};

configuration& config() {
  // Held across fork(2): a thread reading or changing the configuration
  // must not leave the lock held in the child (docs/design.md, "fork").
  static configuration instance;
  static const bool fork_safe = [] {
    ::pthread_atfork([] { instance.mutex.lock(); }, [] { instance.mutex.unlock(); },
                     [] { instance.mutex.unlock(); });
    return true;
  }();
  (void)fork_safe;
  return instance;
}

// "ip", "ip:port", "[v6]" or "[v6]:port" -> "ip:port" / "[v6]:port", as
// ares_set_servers_ports_csv() reads them. Throws std::invalid_argument.
std::string normalise_nameserver(std::string_view text, std::string_view origin) {
  const auto bad = [&](const char* why) -> std::invalid_argument {
    return std::invalid_argument("greenev: " + std::string(origin) + ": nameserver \"" + std::string(text) +
                                 "\" " + why + " (expected ip, ip:port or [ipv6]:port)");
  };
  std::string host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) throw bad("has no closing ']'");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw bad("has junk after ']'");
      port = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  } else {
    host = text;  // IPv4, or IPv6 without a port
  }
  unsigned char buffer[sizeof(in6_addr)];
  const bool v4 = ::inet_pton(AF_INET, host.c_str(), buffer) == 1;
  if (!v4 && ::inet_pton(AF_INET6, host.c_str(), buffer) != 1) throw bad("is not a numeric IP address");
  unsigned number = 53;
  if (!port.empty() || (text.size() > 0 && text.back() == ':')) {
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (error != std::errc{} || end != port.data() + port.size() || number == 0 || number > 65535) {
      throw bad("has a bad port");
    }
  }
  return (v4 ? host : "[" + host + "]") + ":" + std::to_string(number);
}

void validate(resolver_options& options, std::string_view origin) {
  for (std::string& server : options.nameservers) server = normalise_nameserver(server, origin);
  if (options.timeout.is_forever() || options.timeout.is_poll()) {
    throw std::invalid_argument("greenev: " + std::string(origin) +
                                ": the resolver timeout must be positive");
  }
  if (options.tries < 1) {
    throw std::invalid_argument("greenev: " + std::string(origin) + ": resolver tries must be at least 1");
  }
}

// Defaults, overridden by the environment. Throws std::invalid_argument
// naming the variable.
resolver_options from_environment() {
  resolver_options options;
  if (const char* backend = std::getenv("GREENEV_RESOLVER"); backend != nullptr && *backend != '\0') {
    const std::string_view name = backend;
    if (name == "ares") {
      options.backend = resolver_backend::ares;
    } else if (name == "thread") {
      options.backend = resolver_backend::thread;
    } else {
      throw std::invalid_argument("greenev: GREENEV_RESOLVER=\"" + std::string(name) +
                                  "\" is neither \"ares\" nor \"thread\"");
    }
  }
  if (const char* list = std::getenv("GREENEV_RESOLVER_NAMESERVERS"); list != nullptr) {
    std::string_view rest = list;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!item.empty()) options.nameservers.emplace_back(item);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  if (const char* text = std::getenv("GREENEV_RESOLVER_TIMEOUT"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    errno = 0;
    const double seconds = std::strtod(text, &end);
    if (errno != 0 || *end != '\0' || !std::isfinite(seconds) || seconds <= 0) {
      throw std::invalid_argument("greenev: GREENEV_RESOLVER_TIMEOUT=\"" + std::string(text) +
                                  "\" is not a positive number of seconds");
    }
    options.timeout = seconds;
  }
  validate(options, "the environment");
  return options;
}

// ---- input checks and numeric answers ---------------------------------------

void require_name(std::string_view name) {
  if (name.empty()) fail(EAI_NONAME, resolver_failure::bad_input, name, "empty host name");
  if (name.find('\0') != std::string_view::npos) {
    fail(EAI_NONAME, resolver_failure::bad_input, name, "host name contains a NUL character");
  }
}

// A numeric IPv4/IPv6 address (with an optional IPv6 %scope), or nothing.
std::optional<address> numeric_address(std::string_view host) {
  // Skip the (throwing) parse for obvious names; a %scope may name an interface.
  const bool maybe_numeric = host.find_first_not_of("0123456789abcdefABCDEF.:") == std::string_view::npos ||
                             host.find('%') != std::string_view::npos;
  if (!maybe_numeric) return std::nullopt;
  try {
    return address::parse(host, 0);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

// One socket type a result is made for, with its port.
struct service_entry {
  int socktype;
  int protocol;
  std::uint16_t port;
};

int default_protocol(int socktype, int protocol) {
  if (protocol != 0) return protocol;
  if (socktype == SOCK_STREAM) return IPPROTO_TCP;
  if (socktype == SOCK_DGRAM) return IPPROTO_UDP;
  return 0;
}

// libc's rules: socket type 0 means stream, datagram and raw; a named service
// keeps the types it is defined for (never raw). Resolved before the host,
// as libc does, so a bad service costs no query.
std::vector<service_entry> resolve_service(std::string_view host, std::string_view service,
                                           const addrinfo_hints& hints) {
  std::vector<service_entry> kinds;
  if (hints.socktype != 0) {
    kinds.push_back({hints.socktype, default_protocol(hints.socktype, hints.protocol), 0});
  } else if (hints.protocol == IPPROTO_TCP) {
    kinds.push_back({SOCK_STREAM, IPPROTO_TCP, 0});
  } else if (hints.protocol == IPPROTO_UDP) {
    kinds.push_back({SOCK_DGRAM, IPPROTO_UDP, 0});
  } else if (hints.protocol != 0) {
    kinds.push_back({SOCK_RAW, hints.protocol, 0});
  } else {
    kinds = {{SOCK_STREAM, IPPROTO_TCP, 0}, {SOCK_DGRAM, IPPROTO_UDP, 0}, {SOCK_RAW, 0, 0}};
  }
  if (service.empty()) return kinds;

  const std::string text(service);
  const auto bad_service = [&](const std::string& why) {
    fail(EAI_SERVICE, resolver_failure::bad_service, host, "service \"" + text + "\" " + why);
  };
  if (text.find('\0') != std::string::npos) bad_service("contains a NUL character");
  unsigned number = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error == std::errc{} && end == text.data() + text.size()) {
    if (number > 65535) bad_service("is not a port number");
    for (service_entry& kind : kinds) kind.port = static_cast<std::uint16_t>(number);
    return kinds;
  }
  if ((hints.flags & AI_NUMERICSERV) != 0) {
    fail(EAI_NONAME, resolver_failure::bad_input, host,
         "service \"" + text + "\" is not numeric (AI_NUMERICSERV)");
  }
  std::vector<service_entry> found;
  for (const service_entry& kind : kinds) {
    const char* protocol = kind.socktype == SOCK_STREAM  ? "tcp"
                           : kind.socktype == SOCK_DGRAM ? "udp"
                                                         : nullptr;
    if (protocol == nullptr) continue;
    servent entry{};
    servent* result = nullptr;
    std::array<char, 1024> buffer{};
    if (::getservbyname_r(text.c_str(), protocol, &entry, buffer.data(), buffer.size(), &result) == 0 &&
        result != nullptr) {
      found.push_back({kind.socktype, kind.protocol, ntohs(static_cast<std::uint16_t>(result->s_port))});
    }
  }
  if (found.empty()) bad_service("is not known for this socket type");
  return found;
}

// The NULL host of libc: loopback, or the wildcard for AI_PASSIVE (IPv6
// first for loopback, IPv4 first for the wildcard, as glibc orders them).
std::vector<address> local_addresses(int family, int flags) {
  const bool passive = (flags & AI_PASSIVE) != 0;
  const address v4 = address::parse(passive ? "0.0.0.0" : "127.0.0.1", 0);
  const address v6 = address::parse(passive ? "::" : "::1", 0);
  if (family == AF_INET) return {v4};
  if (family == AF_INET6) return {v6};
  return passive ? std::vector<address>{v4, v6} : std::vector<address>{v6, v4};
}

// A numeric host for `family`: IPv4 becomes IPv4-mapped IPv6 with AI_V4MAPPED.
address numeric_for_family(std::string_view host, const address& numeric, int family, int flags) {
  if (family == AF_UNSPEC || family == numeric.family()) return numeric;
  if (family == AF_INET6 && numeric.family() == AF_INET && (flags & AI_V4MAPPED) != 0) {
    return address::parse("::ffff:" + numeric.host(), 0);
  }
  fail(EAI_ADDRFAMILY, resolver_failure::bad_input, host, "the address is not of the requested family");
}

void require_family(std::string_view host, int family) {
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) {
    fail(EAI_FAMILY, resolver_failure::bad_input, host,
         "address family " + std::to_string(family) + " is not supported");
  }
}

address with_port(address a, std::uint16_t port) {
  if (a.family() == AF_INET) {
    reinterpret_cast<sockaddr_in*>(a.data())->sin_port = htons(port);
  } else if (a.family() == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(a.data())->sin6_port = htons(port);
  }
  return a;
}

std::vector<address_info> expand(const detail::dns::resolved_host& host,
                                 const std::vector<service_entry>& kinds) {
  std::vector<address_info> results;
  results.reserve(host.addresses.size() * kinds.size());
  for (const address& a : host.addresses) {
    for (const service_entry& kind : kinds) {
      results.push_back({a.family(), kind.socktype, kind.protocol, with_port(a, kind.port), {}});
    }
  }
  if (!results.empty()) results.front().canonical_name = host.canonical_name;
  return results;
}

std::string service_name(std::uint16_t port, bool datagram) {
  servent entry{};
  servent* result = nullptr;
  std::array<char, 1024> buffer{};
  if (::getservbyport_r(htons(port), datagram ? "udp" : "tcp", &entry, buffer.data(), buffer.size(),
                        &result) == 0 &&
      result != nullptr) {
    return result->s_name;
  }
  return std::to_string(port);
}

}  // namespace

// ---- errors -----------------------------------------------------------------

namespace {

class resolver_category_impl final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "resolver"; }
  [[nodiscard]] std::string message(int code) const override { return ::gai_strerror(code); }
};

}  // namespace

const std::error_category& resolver_category() noexcept {
  static const resolver_category_impl instance;
  return instance;
}

resolver_error::resolver_error(int eai_code, resolver_failure failure, std::string host,
                               const std::string& detail)
    : std::system_error(eai_code, resolver_category()),
      failure_(failure),
      host_(std::move(host)),
      message_("greenev: cannot resolve \"" + host_ + "\": " + detail) {}

namespace detail::dns {

void fail(int eai_code, resolver_failure failure, std::string_view host, const std::string& detail) {
  throw resolver_error(eai_code, failure, std::string(host), detail);
}

settings current_settings() {
  configuration& c = config();
  std::lock_guard lock(c.mutex);
  // Read the environment until it parses: a malformed variable fails every
  // lookup loudly rather than being ignored.
  if (!c.options) c.options = from_environment();
  return settings{*c.options, c.generation};
}

}  // namespace detail::dns

resolver_options resolver_configuration() {
  return detail::dns::current_settings().options;
}

void configure_resolver(resolver_options options) {
  validate(options, "configure_resolver");
  configuration& c = config();
  std::lock_guard lock(c.mutex);
  c.options = std::move(options);
  ++c.generation;
}

// ---- lookups ----------------------------------------------------------------

std::vector<address_info> getaddrinfo(std::string_view host, std::string_view service,
                                      const addrinfo_hints& hints) {
  const settings config = detail::dns::current_settings();
  if (host.empty() && service.empty()) {
    fail(EAI_NONAME, resolver_failure::bad_input, host, "neither a host nor a service given");
  }
  if (!host.empty()) require_name(host);
  require_family(host, hints.family);
  if (config.options.backend == resolver_backend::thread) {
    return detail::dns::thread_getaddrinfo(std::string(host), std::string(service), hints);
  }
  const std::vector<service_entry> kinds = resolve_service(host, service, hints);
  detail::dns::resolved_host resolved;
  if (host.empty()) {
    resolved.addresses = local_addresses(hints.family, hints.flags);
  } else if (const std::optional<address> numeric = numeric_address(host)) {
    resolved.addresses = {numeric_for_family(host, *numeric, hints.family, hints.flags)};
    if ((hints.flags & AI_CANONNAME) != 0) resolved.canonical_name = host;
  } else if ((hints.flags & AI_NUMERICHOST) != 0) {
    fail(EAI_NONAME, resolver_failure::bad_input, host, "not a numeric address (AI_NUMERICHOST)");
  } else {
    resolved = detail::dns::ares_resolve(std::string(host), hints.family, hints.flags, config);
  }
  return expand(resolved, kinds);
}

host_entry gethostbyname_ex(std::string_view name) {
  const settings config = detail::dns::current_settings();
  require_name(name);
  if (config.options.backend == resolver_backend::thread)
    return detail::dns::thread_host_by_name(std::string(name));
  if (const std::optional<address> numeric = numeric_address(name)) {
    if (numeric->family() != AF_INET) {
      fail(EAI_ADDRFAMILY, resolver_failure::bad_input, name, "not an IPv4 address");
    }
    const std::string text(name);
    return host_entry{text, {}, {text}};
  }
  return detail::dns::ares_host_by_name(std::string(name), config);
}

std::string gethostbyname(std::string_view name) {
  host_entry entry = gethostbyname_ex(name);
  if (entry.addresses.empty()) fail(EAI_NODATA, resolver_failure::no_data, name, "no IPv4 address");
  return std::move(entry.addresses.front());
}

host_entry gethostbyaddr(std::string_view ip) {
  const settings config = detail::dns::current_settings();
  require_name(ip);
  address target;
  if (const std::optional<address> numeric = numeric_address(ip)) {
    target = *numeric;
  } else {
    target = getaddrinfo(ip, {}, addrinfo_hints{.socktype = SOCK_STREAM}).front().address;  // Python's way
  }
  const std::string text = target.host();
  if (config.options.backend == resolver_backend::thread)
    return detail::dns::thread_host_by_address(target, text);
  return detail::dns::ares_host_by_address(target, text, config);
}

std::pair<std::string, std::string> getnameinfo(const address& a, int flags) {
  const settings config = detail::dns::current_settings();
  const std::string shown = a.to_string();
  if (a.family() != AF_INET && a.family() != AF_INET6) {
    fail(EAI_FAMILY, resolver_failure::bad_input, shown, "getnameinfo needs an IPv4 or IPv6 address");
  }
  // Flags libc knows (the IDN ones are accepted and, here, have no effect);
  // anything else is EAI_BADFLAGS on both backends, as in libc.
  constexpr int known_flags =
      NI_NUMERICHOST | NI_NUMERICSERV | NI_NOFQDN | NI_NAMEREQD | NI_DGRAM | NI_IDN |
      0xc0;  // glibc's retired NI_IDN_ALLOW_UNASSIGNED and NI_IDN_USE_STD3_ASCII_RULES
  if ((flags & ~known_flags) != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%#x", static_cast<unsigned>(flags & ~known_flags));
    fail(EAI_BADFLAGS, resolver_failure::bad_input, shown, std::string("unknown getnameinfo flags ") + hex);
  }
  if (config.options.backend == resolver_backend::thread) return detail::dns::thread_name_info(a, flags);
  if ((flags & NI_NUMERICHOST) != 0) {
    if ((flags & NI_NAMEREQD) != 0) {
      fail(EAI_NONAME, resolver_failure::bad_input, shown, "NI_NAMEREQD with NI_NUMERICHOST");
    }
    const std::string service = (flags & NI_NUMERICSERV) != 0
                                    ? std::to_string(a.port())
                                    : service_name(a.port(), (flags & NI_DGRAM) != 0);
    return {a.host(), service};
  }
  return detail::dns::ares_name_info(a, flags, config);
}

}  // namespace greenev
