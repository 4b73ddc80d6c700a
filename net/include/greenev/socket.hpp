// Cooperative sockets (gevent.socket): TCP, UDP and Unix-domain sockets whose
// blocking calls park only the calling greenlet.
//
//   greenev::socket s = greenev::create_connection("127.0.0.1", 8001, 5.0);
//   s.sendall("hello");
//   std::string reply = s.recv(4096);   // "" at end of stream
//
// The kernel fd is always non-blocking; "blocking" is emulated by waiting in
// the hub (wait_read / wait_write). Each socket has a timeout (set_timeout):
// forever (the default) blocks until done, zero makes every call
// non-blocking (std::system_error EAGAIN instead of waiting), anything else
// waits that long per call, then throws greenev::timeout_error whose source()
// is the socket. OS errors are std::system_error with the errno and a message
// naming the call and the peer. Sends never raise SIGPIPE (MSG_NOSIGNAL): a
// closed peer is EPIPE.
//
// Threading: a socket belongs to the thread whose hub waits on it. One
// greenlet may wait to read while another waits to write; two readers (or two
// writers) at once is a greenlet_error. close() from another greenlet wakes
// the waiting ones with std::system_error(EBADF).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <greenev/address.hpp>
#include <greenev/hub.hpp>

namespace greenev {

/// A cooperative socket (see the top of this file). Move-only; owns its fd.
class socket {
 public:
  /// No socket (fd() == -1). Every operation but close() throws
  /// std::system_error(EBADF) on it.
  socket() noexcept = default;

  /// A new socket (socket(2) with these arguments), non-blocking and close-on-exec.
  /// Throws std::system_error. Never switches.
  socket(int family, int type, int protocol = 0);

  /// Takes ownership of an open socket fd and makes it non-blocking. Throws
  /// std::system_error (the fd is then not owned).
  [[nodiscard]] static socket adopt(int fd);

  /// Moves ownership of the fd (and the timeout); `other` is left empty.
  /// Assignment closes this socket's fd first, ignoring errors.
  ///@{
  socket(socket&& other) noexcept;
  socket& operator=(socket&& other) noexcept;
  ///@}
  socket(const socket&) = delete;
  socket& operator=(const socket&) = delete;
  /// Closes (see close()), ignoring errors.
  ~socket();

  /// The fd, -1 if empty; true if it has one.
  ///@{
  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
  ///@}
  /// Gives up ownership: returns the fd (still non-blocking) and leaves this empty.
  [[nodiscard]] int release() noexcept;

  /// The timeout of every later blocking call (see the top of this file).
  ///@{
  void set_timeout(wait_time timeout) noexcept { timeout_ = timeout; }
  [[nodiscard]] wait_time timeout() const noexcept { return timeout_; }
  ///@}

  /// bind(2) / listen(2). Throw std::system_error. Never switch.
  ///@{
  void bind(const address& local);
  void listen(int backlog = 128);
  ///@}

  /// Waits for a connection; returns the connected socket (non-blocking
  /// kernel fd, timeout forever) and the peer's address. Switches while none
  /// is pending.
  [[nodiscard]] std::pair<socket, address> accept();

  /// Connects, waiting at most `timeout` (default: the socket's timeout).
  /// Throws std::system_error (e.g. ECONNREFUSED) or timeout_error. Switches.
  ///@{
  void connect(const address& peer);
  void connect(const address& peer, wait_time timeout);
  ///@}

  /// gevent's connect_ex: connect() that returns the error instead of
  /// throwing it — 0 once connected, else the errno (ECONNREFUSED...),
  /// ETIMEDOUT if the timeout passed, EINPROGRESS for timeout 0. Throws only
  /// std::system_error(EBADF) on a closed socket. Switches.
  ///@{
  [[nodiscard]] int connect_ex(const address& peer);
  [[nodiscard]] int connect_ex(const address& peer, wait_time timeout);
  ///@}

  /// Receives at most buffer.size() bytes into `buffer`; returns how many, 0
  /// at end of stream (or for an empty buffer). Switches while nothing is there.
  std::size_t recv_into(std::span<char> buffer, int flags = 0);
  /// Receives at most `max_bytes`; "" at end of stream.
  [[nodiscard]] std::string recv(std::size_t max_bytes, int flags = 0);

  /// Sends some of `data`; returns how many bytes went (at least 1 unless
  /// `data` is empty). Switches while the send buffer is full.
  std::size_t send(std::string_view data, int flags = 0);
  /// Sends all of `data`. The timeout bounds the whole call, not each chunk;
  /// on timeout_error some of the data may have been sent. Empty data returns
  /// at once.
  void sendall(std::string_view data, int flags = 0);

  /// Datagram forms: recvfrom_into fills `from` with the sender.
  ///@{
  std::size_t recvfrom_into(std::span<char> buffer, address& from, int flags = 0);
  [[nodiscard]] std::pair<std::string, address> recvfrom(std::size_t max_bytes, int flags = 0);
  std::size_t sendto(std::string_view data, const address& to, int flags = 0);
  ///@}

  /// shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR. Throws std::system_error.
  void shutdown(int how);

  /// Wakes greenlets waiting on this socket (they get EBADF), then closes the
  /// fd. Idempotent; never switches. Throws std::system_error only if close(2)
  /// itself fails (the fd is released anyway).
  void close();

  /// setsockopt / getsockopt for int-valued options (SO_REUSEADDR,
  /// TCP_NODELAY, ...). Throw std::system_error.
  ///@{
  void set_option(int level, int name, int value);
  [[nodiscard]] int option(int level, int name) const;
  ///@}

  /// getsockname / getpeername. Throw std::system_error.
  ///@{
  [[nodiscard]] address local_address() const;
  [[nodiscard]] address peer_address() const;
  ///@}

 private:
  explicit socket(int fd) noexcept : fd_(fd) {}
  int require(const char* what) const;  // the fd, or throws EBADF
  // Waits for `events` (1 = read, 2 = write) until `deadline`; throws
  // timeout_error when it passes. `what` names the call in errors.
  void wait(int events, std::chrono::steady_clock::time_point deadline, wait_time limit, const char* what);

  int fd_ = -1;
  wait_time timeout_{};
  bool watched_ = false;  // the hub's loop has seen this fd (see detail::wait_owned_fd)
  bool drained_ = false;  // the last recv got less than asked: wait before the next
};

/// gevent.socket.create_connection: resolves `host` (greenev::getaddrinfo in
/// dns.hpp; numeric hosts need no lookup) and tries each address in turn
/// with `timeout` per attempt; returns the first connected TCP socket, with
/// its timeout set to `timeout`. Throws the last attempt's error
/// (std::system_error or timeout_error), or the resolver's resolver_error.
/// Switches.
[[nodiscard]] socket create_connection(std::string_view host, std::uint16_t port, wait_time timeout = {});
/// The same, binding each attempt's socket to `source` first (gevent's
/// source_address; port 0: any). An address of another family than the
/// source's is skipped; if none is left, throws std::system_error(EADDRNOTAVAIL).
[[nodiscard]] socket create_connection(std::string_view host, std::uint16_t port, wait_time timeout,
                                       const address& source);

}  // namespace greenev
