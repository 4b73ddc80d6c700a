// The resolver interposers: getaddrinfo/freeaddrinfo and the gethostbyname
// family answered by greenev's resolver (c-ares on the hub) inside a
// greenlet, by libc elsewhere. docs/design.md, "Interposition".
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include <greenev/detail/patch_support.hpp>
#include <greenev/dns.hpp>

#include "patch_internal.hpp"

namespace greenev::monkey::detail {
namespace {

real_function<int (*)(const char*, const char*, const addrinfo*, addrinfo**)> real_getaddrinfo{"getaddrinfo"};
real_function<void (*)(addrinfo*)> real_freeaddrinfo{"freeaddrinfo"};
real_function<hostent* (*)(const char*)> real_gethostbyname{"gethostbyname"};
real_function<hostent* (*)(const char*, int)> real_gethostbyname2{"gethostbyname2"};
real_function<int (*)(const char*, hostent*, char*, size_t, hostent**, int*)> real_gethostbyname_r{
    "gethostbyname_r"};
real_function<hostent* (*)(const void*, socklen_t, int)> real_gethostbyaddr{"gethostbyaddr"};

bool dns_patched() noexcept {
  return patched(dns_bit) && greenev::detail::may_park_here();
}

// One node of a list we return: freed by our freeaddrinfo, which tells our
// lists from libc's by their head (libc's layout is private).
struct node {
  addrinfo info;
  sockaddr_storage address;
};

// Leaked on purpose: freeaddrinfo may run during static destruction.
std::mutex& lists_mutex() {
  static auto* const m = new std::mutex;
  return *m;
}
std::unordered_set<addrinfo*>& lists() {
  static auto* const s = new std::unordered_set<addrinfo*>;
  return *s;
}
constinit std::atomic<std::size_t> lists_out{0};

void free_nodes(addrinfo* head) noexcept {
  while (head != nullptr) {
    addrinfo* next = head->ai_next;
    std::free(head->ai_canonname);
    delete reinterpret_cast<node*>(head);  // `info` is node's first member
    head = next;
  }
}

addrinfo* to_list(const std::vector<greenev::address_info>& results) {
  addrinfo* head = nullptr;
  addrinfo** tail = &head;
  try {
    for (const greenev::address_info& r : results) {
      auto* n = new node{};
      *tail = &n->info;
      tail = &n->info.ai_next;
      n->info.ai_family = r.family;
      n->info.ai_socktype = r.socktype;
      n->info.ai_protocol = r.protocol;
      const std::size_t length = std::min<std::size_t>(r.address.size(), sizeof n->address);
      std::memcpy(&n->address, r.address.data(), length);
      n->info.ai_addr = reinterpret_cast<sockaddr*>(&n->address);
      n->info.ai_addrlen = static_cast<socklen_t>(length);
      if (!r.canonical_name.empty()) {
        n->info.ai_canonname = ::strdup(r.canonical_name.c_str());
        if (n->info.ai_canonname == nullptr) throw std::bad_alloc();
      }
    }
    const std::lock_guard lock(lists_mutex());
    lists().insert(head);
    lists_out.fetch_add(1, std::memory_order_relaxed);
  } catch (...) {
    free_nodes(head);
    throw;
  }
  return head;
}

int h_error_of(const greenev::resolver_error& e) noexcept {
  switch (e.failure()) {
    case greenev::resolver_failure::not_found:
      return HOST_NOT_FOUND;
    case greenev::resolver_failure::no_data:
      return NO_DATA;
    case greenev::resolver_failure::timeout:
    case greenev::resolver_failure::server_failure:
      return TRY_AGAIN;
    default:
      return NO_RECOVERY;
  }
}

// A host entry with binary addresses of one family, before packing.
struct host_answer {
  std::string name;
  std::vector<std::string> aliases;
  std::vector<std::string> addresses;  // raw bytes, 4 or 16 each
  int family = AF_INET;
};

host_answer lookup_forward(const char* name, int family) {
  host_answer answer;
  answer.family = family;
  if (family == AF_INET) {
    greenev::host_entry entry = greenev::gethostbyname_ex(name);
    answer.name = std::move(entry.name);
    answer.aliases = std::move(entry.aliases);
    for (const std::string& text : entry.addresses) {
      in_addr a{};
      if (::inet_pton(AF_INET, text.c_str(), &a) == 1)
        answer.addresses.emplace_back(reinterpret_cast<char*>(&a), 4);
    }
    return answer;
  }
  greenev::addrinfo_hints hints;
  hints.family = AF_INET6;
  hints.socktype = SOCK_STREAM;
  hints.flags = AI_CANONNAME;
  for (const greenev::address_info& r : greenev::getaddrinfo(name, {}, hints)) {
    if (answer.name.empty()) answer.name = r.canonical_name;
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(r.address.data());
    answer.addresses.emplace_back(reinterpret_cast<const char*>(&in6->sin6_addr), 16);
  }
  if (answer.name.empty()) answer.name = name;
  return answer;
}

// Lays `answer` out in `buffer` the way libc's *_r functions do. Returns 0,
// or ERANGE if the buffer is too small.
int pack(const host_answer& answer, hostent* out, char* buffer, std::size_t length) noexcept {
  const std::size_t address_size = answer.family == AF_INET ? 4 : 16;
  std::size_t need = (answer.aliases.size() + 1 + answer.addresses.size() + 1) * sizeof(char*) +
                     answer.addresses.size() * address_size + answer.name.size() + 1 + alignof(char*);
  for (const std::string& alias : answer.aliases) need += alias.size() + 1;
  if (buffer == nullptr || length < need) return ERANGE;
  char* p = buffer;
  p += (alignof(char*) - reinterpret_cast<std::uintptr_t>(p) % alignof(char*)) % alignof(char*);
  auto** aliases = reinterpret_cast<char**>(p);
  p += (answer.aliases.size() + 1) * sizeof(char*);
  auto** addresses = reinterpret_cast<char**>(p);
  p += (answer.addresses.size() + 1) * sizeof(char*);
  for (std::size_t i = 0; i < answer.addresses.size(); ++i) {
    std::memcpy(p, answer.addresses[i].data(), address_size);
    addresses[i] = p;
    p += address_size;
  }
  addresses[answer.addresses.size()] = nullptr;
  for (std::size_t i = 0; i < answer.aliases.size(); ++i) {
    std::memcpy(p, answer.aliases[i].c_str(), answer.aliases[i].size() + 1);
    aliases[i] = p;
    p += answer.aliases[i].size() + 1;
  }
  aliases[answer.aliases.size()] = nullptr;
  std::memcpy(p, answer.name.c_str(), answer.name.size() + 1);
  out->h_name = p;
  out->h_aliases = aliases;
  out->h_addrtype = answer.family;
  out->h_length = static_cast<int>(address_size);
  out->h_addr_list = addresses;
  return 0;
}

// The thread's static result of gethostbyname/gethostbyname2/gethostbyaddr
// (libc's is per process; per thread is at least as safe).
struct static_host {
  hostent entry{};
  std::vector<char> buffer;
};
thread_local static_host last_host;

// A greenlet whose kill is pending fails lookups at once (docs/errors.md).
hostent* interrupted_lookup() noexcept {
  errno = ECANCELED;
  h_errno = TRY_AGAIN;
  return nullptr;
}

// Runs `lookup` and packs its answer into the thread's static hostent.
template <class Lookup>
hostent* static_lookup(Lookup&& lookup) noexcept {
  try {
    const host_answer answer = lookup();
    last_host.buffer.resize(4096);
    while (pack(answer, &last_host.entry, last_host.buffer.data(), last_host.buffer.size()) == ERANGE) {
      last_host.buffer.resize(last_host.buffer.size() * 2);
    }
    return &last_host.entry;
  } catch (const greenev::resolver_error& e) {
    h_errno = h_error_of(e);
  } catch (const std::exception&) {
    h_errno = NO_RECOVERY;
  } catch (...) {
    store_interruption();
    errno = ECANCELED;
    h_errno = TRY_AGAIN;
  }
  return nullptr;
}

}  // namespace

void link_dns_interposers() noexcept {}

}  // namespace greenev::monkey::detail

using namespace greenev::monkey::detail;  // NOLINT: the interposers below are C functions

extern "C" {

int getaddrinfo(const char* host, const char* service, const addrinfo* hints, addrinfo** result) noexcept {
  if (!dns_patched() || result == nullptr) return real_getaddrinfo(host, service, hints, result);
  if (interruption_pending()) {
    errno = ECANCELED;
    return EAI_SYSTEM;
  }
  greenev::addrinfo_hints h;
  if (hints != nullptr) {
    h.family = hints->ai_family;
    h.socktype = hints->ai_socktype;
    h.protocol = hints->ai_protocol;
    h.flags = hints->ai_flags;
  } else {
    h.flags = AI_V4MAPPED | AI_ADDRCONFIG;  // glibc's default without hints
  }
  const errno_keeper saved;
  try {
    *result =
        to_list(greenev::getaddrinfo(host != nullptr ? host : "", service != nullptr ? service : "", h));
    saved.restore();
    return 0;
  } catch (const greenev::resolver_error& e) {
    if (e.code().value() == EAI_SYSTEM) errno = EIO;
    return e.code().value();
  } catch (const std::bad_alloc&) {
    return EAI_MEMORY;
  } catch (const std::exception&) {
    errno = EINVAL;  // e.g. a malformed GREENEV_RESOLVER* variable
    return EAI_SYSTEM;
  } catch (...) {
    store_interruption();
    errno = ECANCELED;
    return EAI_SYSTEM;
  }
}

void freeaddrinfo(addrinfo* list) noexcept {
  if (list == nullptr) return;
  if (lists_out.load(std::memory_order_relaxed) > 0) {
    bool ours = false;
    {
      const std::lock_guard lock(lists_mutex());
      ours = lists().erase(list) > 0;
    }
    if (ours) {
      lists_out.fetch_sub(1, std::memory_order_relaxed);
      free_nodes(list);
      return;
    }
  }
  real_freeaddrinfo(list);
}

hostent* gethostbyname(const char* name) noexcept {
  if (!dns_patched() || name == nullptr) return real_gethostbyname(name);
  if (interruption_pending()) return interrupted_lookup();
  return static_lookup([&] { return lookup_forward(name, AF_INET); });
}

hostent* gethostbyname2(const char* name, int family) noexcept {
  if (!dns_patched() || name == nullptr || (family != AF_INET && family != AF_INET6)) {
    return real_gethostbyname2(name, family);
  }
  if (interruption_pending()) return interrupted_lookup();
  return static_lookup([&] { return lookup_forward(name, family); });
}

int gethostbyname_r(const char* name, hostent* entry, char* buffer, size_t length, hostent** result,
                    int* h_error) noexcept {
  if (!dns_patched() || name == nullptr || entry == nullptr || result == nullptr || h_error == nullptr) {
    return real_gethostbyname_r(name, entry, buffer, length, result, h_error);
  }
  *result = nullptr;
  if (interruption_pending()) {
    *h_error = TRY_AGAIN;
    errno = ECANCELED;
    return ECANCELED;
  }
  try {
    const host_answer answer = lookup_forward(name, AF_INET);
    if (pack(answer, entry, buffer, length) == ERANGE) {
      *h_error = NETDB_INTERNAL;
      errno = ERANGE;
      return ERANGE;
    }
    *result = entry;
    *h_error = 0;
    return 0;
  } catch (const greenev::resolver_error& e) {
    *h_error = h_error_of(e);
    return 0;  // libc: not found is a successful call with no result
  } catch (const std::bad_alloc&) {
    *h_error = NETDB_INTERNAL;
    return ENOMEM;
  } catch (const std::exception&) {
    *h_error = NO_RECOVERY;
    return EINVAL;
  } catch (...) {
    store_interruption();
    *h_error = TRY_AGAIN;
    errno = ECANCELED;
    return ECANCELED;
  }
}

hostent* gethostbyaddr(const void* address, socklen_t length, int family) noexcept {
  const bool v4 = family == AF_INET && length == 4;
  const bool v6 = family == AF_INET6 && length == 16;
  if (!dns_patched() || address == nullptr || (!v4 && !v6))
    return real_gethostbyaddr(address, length, family);
  if (interruption_pending()) return interrupted_lookup();
  return static_lookup([&] {
    char text[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(family, address, text, sizeof text);
    greenev::host_entry entry = greenev::gethostbyaddr(text);
    host_answer answer;
    answer.family = family;
    answer.name = std::move(entry.name);
    answer.aliases = std::move(entry.aliases);
    answer.addresses.emplace_back(static_cast<const char*>(address), length);
    return answer;
  });
}

}  // extern "C"
