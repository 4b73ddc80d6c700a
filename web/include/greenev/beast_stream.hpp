// Boost.Beast's synchronous calls over greenev streams: an adapter that
// satisfies Beast's SyncReadStream and SyncWriteStream concepts, so that a
// blocking Beast call (http::read, http::write) parks only its greenlet.
//
//   greenev::beast_stream<greenev::socket> io(conn);
//   io.expires_after(10.0);                        // the whole header within 10 s
//   boost::beast::http::read_header(io, buffer, parser, ec);
//
// `Stream` is any type with greenev::socket's member names: recv_into(std::span<char>),
// send(std::string_view), set_timeout(wait_time) (greenev::socket, or a TLS socket
// with the same names). The adapter holds a reference; the stream must outlive it.
// Timeouts: a deadline (expires_after/expires_at, like beast::tcp_stream) bounds
// every later operation together; a read or write timeout bounds each operation
// alone; the shorter wins. An expired one is beast::error::timeout.
// Errors: the error_code overloads give the stream's std::system_error as the same
// errno, end of stream as net::error::eof and a timeout as beast::error::timeout;
// the throwing overloads throw boost::system::system_error with that code.
// Anything else the stream throws (greenlet_exit when killed, greenlet_error)
// propagates from both. Threading: the stream's (one thread; one reader and one
// writer at a time).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/system/system_error.hpp>

#include <greenev/hub.hpp>
#include <greenev/timeout.hpp>

namespace greenev {

/// A Beast SyncReadStream / SyncWriteStream over a greenev stream (see the top of this file).
template <class Stream>
class beast_stream {
 public:
  /// The adapted stream's type.
  using next_layer_type = Stream;
  /// The clock of deadlines.
  using clock = std::chrono::steady_clock;

  /// Adapts `stream` (not owned). No deadline, no read or write timeout: the
  /// operations wait as long as the adapter's timeouts allow (forever).
  explicit beast_stream(Stream& stream) noexcept : stream_(&stream) {}

  /// The adapted stream.
  [[nodiscard]] Stream& next_layer() noexcept { return *stream_; }

  /// A deadline for every later operation together (Beast's tcp_stream
  /// naming); expires_never() removes it. Never switch, never throw.
  ///@{
  void expires_after(wait_time duration) noexcept {
    if (duration.is_forever()) {
      deadline_.reset();
    } else {
      deadline_ = clock::now() + duration.duration();
    }
  }
  void expires_at(clock::time_point deadline) noexcept { deadline_ = deadline; }
  void expires_never() noexcept { deadline_.reset(); }
  ///@}

  /// The longest one read_some / write_some may wait (forever by default).
  ///@{
  void set_read_timeout(wait_time timeout) noexcept { read_timeout_ = timeout; }
  void set_write_timeout(wait_time timeout) noexcept { write_timeout_ = timeout; }
  ///@}

  /// Reads at least one byte into the first non-empty buffer of `buffers`;
  /// returns how many. 0 only for empty buffers. Switches while nothing is
  /// there. Error: see the top of this file.
  ///@{
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::mutable_buffer b = *it;
      if (b.size() == 0) continue;
      return call(read_timeout_, ec, [&] {
        const std::size_t n = stream_->recv_into(std::span<char>(static_cast<char*>(b.data()), b.size()));
        if (n == 0) ec = boost::asio::error::eof;
        return n;
      });
    }
    return 0;
  }
  template <class MutableBufferSequence>
  std::size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    const std::size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "greenev: beast_stream::read_some");
    return n;
  }
  ///@}

  /// Writes some of `buffers` (at least one byte unless they are empty);
  /// returns how many. Small buffers are gathered into one send (at most
  /// 64 KiB) so that a header and a short body leave in one segment.
  /// Switches while the send buffer is full. Error: see the top of this file.
  ///@{
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
    ec = {};
    const std::string_view data = gather(buffers);
    if (data.empty()) return 0;
    return call(write_timeout_, ec, [&] { return stream_->send(data); });
  }
  template <class ConstBufferSequence>
  std::size_t write_some(const ConstBufferSequence& buffers) {
    boost::system::error_code ec;
    const std::size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec, "greenev: beast_stream::write_some");
    return n;
  }
  ///@}

 private:
  static constexpr std::size_t gather_limit = 64 * 1024;

  // The first non-empty buffer as it is when it is large or alone; else as
  // many of the buffers as fit in gather_limit, copied into scratch_.
  template <class ConstBufferSequence>
  std::string_view gather(const ConstBufferSequence& buffers) {
    auto it = boost::asio::buffer_sequence_begin(buffers);
    const auto end = boost::asio::buffer_sequence_end(buffers);
    while (it != end && boost::asio::const_buffer(*it).size() == 0) ++it;
    if (it == end) return {};
    const boost::asio::const_buffer first = *it;
    auto next = it;
    ++next;
    if (next == end || first.size() >= gather_limit / 2) {
      return {static_cast<const char*>(first.data()), first.size()};
    }
    scratch_.clear();
    for (; it != end && scratch_.size() < gather_limit; ++it) {
      const boost::asio::const_buffer b = *it;
      const std::size_t take = std::min(b.size(), gather_limit - scratch_.size());
      scratch_.append(static_cast<const char*>(b.data()), take);
    }
    return scratch_;
  }

  // Runs one stream call under the per-call limit and the deadline, turning
  // the stream's errors into `ec`.
  template <class F>
  std::size_t call(wait_time per_call, boost::system::error_code& ec, F&& f) {
    wait_time limit = per_call;
    if (deadline_) {
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline_ - clock::now());
      if (left.count() <= 0) {
        ec = boost::beast::error::timeout;
        return 0;
      }
      if (limit.is_forever() || left < limit.duration()) limit = left;
    }
    stream_->set_timeout(limit);
    try {
      return f();
    } catch (const timeout_error&) {
      ec = boost::beast::error::timeout;
    } catch (const std::system_error& error) {
      const std::error_category& category = error.code().category();
      if (category == std::generic_category() || category == std::system_category()) {
        ec.assign(error.code().value(), boost::system::system_category());
      } else {
        ec = boost::system::errc::make_error_code(boost::system::errc::io_error);
      }
    }
    return 0;
  }

  Stream* stream_;
  std::optional<clock::time_point> deadline_;
  wait_time read_timeout_{};
  wait_time write_timeout_{};
  std::string scratch_;
};

}  // namespace greenev
