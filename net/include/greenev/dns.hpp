// greenev/dns.hpp — cooperative name resolution (gevent.resolver): lookups
// that park only the calling greenlet while the query is in flight.
//
//   for (const auto& info : greenev::getaddrinfo("example.org", "http")) sock.connect(info.address);
//   std::string ip = greenev::gethostbyname("localhost");           // "127.0.0.1"
//   auto [host, service] = greenev::getnameinfo(greenev::address::parse("127.0.0.1", 80));
//
// Two backends, chosen with resolver_options::backend or GREENEV_RESOLVER:
// - `ares` (the default): c-ares, driven by the calling thread's hub — one
//   channel per thread, shared by every lookup of that thread, no thread per
//   lookup. /etc/hosts and resolv.conf are honoured as c-ares reads them.
//   Lookups stay independent: one failing (a nameserver closing its TCP
//   connection, a SERVFAIL) never fails or delays the others.
// - `thread`: the system resolver (::getaddrinfo, gethostbyname_r, ...) on a
//   small per-thread threadpool: exactly libc's answers (nsswitch, mDNS, ...),
//   at the price of one worker thread per concurrent lookup.
// Numeric hosts ("127.0.0.1", "::1") never touch the network.
// Threading: lookups act on the calling thread's hub; any thread may resolve.
// The configuration (configure_resolver) is process-wide.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>

namespace greenev {

/// What to look up, as libc's struct addrinfo hints: family (AF_UNSPEC,
/// AF_INET, AF_INET6), socktype (0 = every kind), protocol, and AI_* flags
/// (AI_CANONNAME, AI_NUMERICHOST, AI_NUMERICSERV and AI_PASSIVE are honoured
/// by both backends; AI_V4MAPPED, AI_ALL and AI_ADDRCONFIG are passed on).
struct addrinfo_hints {
  int family = AF_UNSPEC;  ///< AF_UNSPEC, AF_INET or AF_INET6.
  int socktype = 0;        ///< SOCK_STREAM, SOCK_DGRAM, ... or 0 for every kind.
  int protocol = 0;        ///< IPPROTO_*, or 0.
  int flags = 0;           ///< AI_* flags.
};

/// One result of getaddrinfo: an address ready for socket(family, socktype,
/// protocol) and connect/bind. canonical_name is set on the first result
/// only, and only with AI_CANONNAME (as libc does).
struct address_info {
  int family;                  ///< For socket().
  int socktype;                ///< For socket().
  int protocol;                ///< For socket().
  greenev::address address;    ///< For connect() or bind().
  std::string canonical_name;  ///< With AI_CANONNAME, on the first result.
};

/// Resolves `host` (a name or a numeric address) and `service` (a port number
/// or a name from /etc/services) into addresses, like libc's getaddrinfo:
/// with socktype 0, one result per address and socket type (stream, datagram,
/// and raw when no named service is given), in the resolver's preferred order
/// (RFC 6724, as libc). An empty `host` means libc's NULL host: the loopback
/// address, or the wildcard with AI_PASSIVE (then `service` must be given).
/// Returns at least one result. Switches while a query is in flight (never for
/// numeric hosts). Throws resolver_error naming the host (not found, no
/// address of that family, timeout, the nameserver's own error — SERVFAIL,
/// REFUSED, NOTIMP, FORMERR, a malformed answer, a closed connection or an
/// unreachable server, each said in what() — bad input, unknown service);
/// greenlet_error in the hub; std::invalid_argument if the environment
/// configuration is malformed. A kill or timeout of the caller abandons the
/// query cleanly.
std::vector<address_info> getaddrinfo(std::string_view host, std::string_view service = {},
                                      const addrinfo_hints& hints = {});

/// The first IPv4 address of `name` as text ("127.0.0.1"), like Python's
/// socket.gethostbyname. A numeric IPv4 address is returned as is. Switches
/// while a query is in flight. Throws resolver_error (also for an empty name,
/// or an IPv6-only name), greenlet_error in the hub.
std::string gethostbyname(std::string_view name);

/// A host's official name, aliases and addresses as text.
struct host_entry {
  std::string name;                    ///< The official name.
  std::vector<std::string> aliases;    ///< Other names.
  std::vector<std::string> addresses;  ///< Numeric addresses.
};

/// The IPv4 host entry of `name` (Python's socket.gethostbyname_ex).
/// Switches while a query is in flight. Throws as gethostbyname.
host_entry gethostbyname_ex(std::string_view name);

/// The reverse lookup of `ip` (IPv4 or IPv6, numeric; a name is resolved
/// first, as Python does): the host's name from /etc/hosts or a PTR query,
/// its aliases, and `ip` itself. Switches. Throws resolver_error if the
/// address has no name, on timeouts and failures; greenlet_error in the hub.
host_entry gethostbyaddr(std::string_view ip);

/// The (host, service) names of an IPv4 or IPv6 address, like libc's
/// getnameinfo with NI_* `flags`: NI_NUMERICHOST and NI_NUMERICSERV give
/// numbers (then no lookup and no switch), NI_NAMEREQD makes a missing name
/// an error (else the numeric host is returned), NI_NOFQDN shortens local
/// names, NI_DGRAM looks the service up as UDP. Switches while a query is in
/// flight. Throws resolver_error (EAI_FAMILY for a Unix or empty address,
/// EAI_BADFLAGS for flags libc does not know), greenlet_error in the hub.
std::pair<std::string, std::string> getnameinfo(const greenev::address& a, int flags = 0);

/// Why a lookup failed, beyond the EAI code.
enum class resolver_failure {
  not_found,       // no such name (NXDOMAIN), or an address with no name
  no_data,         // the name exists but has no address of the requested family
  timeout,         // no answer from the nameservers in time (timeout x tries)
  server_failure,  // an error answer (SERVFAIL, REFUSED, NOTIMP, FORMERR), a malformed
                   // answer, a closed connection, or no nameserver reachable
  bad_input,       // an empty or malformed name, a wrong family, bad flags
  bad_service,     // the service is not known for the requested socket type
  cancelled,       // the resolver was shut down (thread exit) during the lookup
  system,          // the operating system refused something (code() says what)
};

/// The EAI_* error category: code().value() is a libc EAI_* value (EAI_NONAME,
/// EAI_AGAIN, ...), message() is gai_strerror's text.
[[nodiscard]] const std::error_category& resolver_category() noexcept;

/// What every failed lookup throws: a std::system_error in
/// resolver_category() whose what() names the host and says what went wrong,
/// e.g. `greenev: cannot resolve "nosuch.example": no such host`.
class resolver_error : public std::system_error {
 public:
  /// `eai_code` is a libc EAI_* value; `detail` ends the message.
  resolver_error(int eai_code, resolver_failure failure, std::string host, const std::string& detail);
  /// The name or address that was being resolved.
  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  /// Why it failed.
  [[nodiscard]] resolver_failure failure() const noexcept { return failure_; }
  /// The whole message, naming the host.
  [[nodiscard]] const char* what() const noexcept override { return message_.c_str(); }

 private:
  resolver_failure failure_;
  std::string host_;
  std::string message_;
};

/// Which implementation answers lookups (see the top of this header).
enum class resolver_backend { ares, thread };

/// The resolver configuration. nameservers: "ip", "ip:port" or "[v6]:port";
/// empty means resolv.conf's. timeout is per try; a lookup gives up after
/// `tries` rounds over the nameservers, the wait doubling each round (as
/// c-ares does: 1 server, timeout 1 s, 2 tries = 3 s), counted from when it
/// was asked, also if it first waited its turn behind 128 lookups of its
/// thread in flight. nameservers, timeout and tries apply to the ares
/// backend; the thread backend is libc's own (resolv.conf, RES_OPTIONS).
struct resolver_options {
  std::vector<std::string> nameservers;               ///< Empty: resolv.conf's.
  wait_time timeout = 5.0;                            ///< Per try.
  int tries = 2;                                      ///< Tries before giving up.
  resolver_backend backend = resolver_backend::ares;  ///< Who answers.
};

/// The configuration lookups use now: the last configure_resolver() call, or
/// else the defaults overridden by the environment — GREENEV_RESOLVER
/// (ares|thread), GREENEV_RESOLVER_NAMESERVERS (comma-separated ip[:port]),
/// GREENEV_RESOLVER_TIMEOUT (seconds per try) — read once, when first needed.
/// Never switches. Throws std::invalid_argument naming the variable if one is
/// malformed.
[[nodiscard]] resolver_options resolver_configuration();

/// Replaces the process-wide configuration (the environment is not read any
/// more). Lookups started afterwards, on any thread, use it; lookups in
/// flight finish on the old one. Never switches. Throws std::invalid_argument
/// for a malformed nameserver, a timeout that is forever or zero, or tries < 1.
void configure_resolver(resolver_options options);

}  // namespace greenev
