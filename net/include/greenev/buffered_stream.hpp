// A buffered stream over a socket for line protocols (gevent's
// `sock.makefile()`): readline, exact reads and buffered writes.
//
//   greenev::socket conn = greenev::create_connection("127.0.0.1", 6379, 5.0);
//   greenev::buffered_stream io(conn);
//   io.write("PING\r\n");
//   io.flush();
//   std::string reply = io.readline();   // "+PONG\r\n"; other greenlets run meanwhile
//
// Works over any stream with greenev::socket's member names (recv_into, sendall):
// greenev::socket, greenev::tls_socket. It refers to the stream, which must outlive
// it, and owns only its buffers. Reads switch while the stream has nothing; a
// stream's errors (timeouts, EBADF after close) come through unchanged.
// Threading: as the stream's; one reading greenlet and one writing greenlet at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace greenev {

/// See the top of this file.
template <class Stream>
class buffered_stream {
 public:
  /// Reads `stream` in pieces of up to `read_size` bytes; writes go out once
  /// `write_size` bytes are buffered, or on flush().
  explicit buffered_stream(Stream& stream, std::size_t read_size = 64 * 1024,
                           std::size_t write_size = 64 * 1024)
      : stream_(stream), read_size_(std::max<std::size_t>(read_size, 1)), write_size_(write_size) {}

  /// The next line with its '\n' (the last may lack it), or `max` bytes if no
  /// newline comes before; "" at end of stream. Switches.
  std::string readline(std::size_t max = 1 << 20) { return read_until("\n", max); }

  /// Everything up to and including `delimiter`, or `max` bytes, or what is
  /// left at end of stream ("" if nothing). Switches.
  std::string read_until(std::string_view delimiter, std::size_t max = 1 << 20) {
    std::size_t searched = 0;
    for (;;) {
      const std::size_t found = in_.find(delimiter, searched);
      if (found != std::string::npos && found + delimiter.size() <= max)
        return take(found + delimiter.size());
      if (in_.size() >= max || eof_) return take(std::min(max, in_.size()));
      searched = in_.size() >= delimiter.size() ? in_.size() - delimiter.size() + 1 : 0;
      fill();
    }
  }

  /// Exactly `size` bytes, fewer only at end of stream. Switches.
  std::string read(std::size_t size) {
    while (in_.size() < size && !eof_) fill();
    return take(std::min(size, in_.size()));
  }

  /// What is buffered, or else one read from the stream: at most `max`
  /// bytes, "" at end of stream. Switches when the buffer is empty.
  std::string read_some(std::size_t max = 64 * 1024) {
    if (in_.empty() && !eof_) fill();
    return take(std::min(max, in_.size()));
  }

  /// Buffers `data`; sends it all once write_size bytes are waiting. Switches then.
  void write(std::string_view data) {
    out_ += data;
    if (out_.size() >= write_size_) flush();
  }

  /// Sends what is buffered (the stream's sendall). Switches.
  void flush() {
    if (out_.empty()) return;
    const std::string pending = std::move(out_);
    out_.clear();
    stream_.sendall(pending);
  }

  /// The stream it reads and writes.
  [[nodiscard]] Stream& stream() noexcept { return stream_; }
  /// Bytes read from the stream and not yet returned.
  [[nodiscard]] std::size_t buffered() const noexcept { return in_.size(); }

 private:
  void fill() {
    const std::size_t old = in_.size();
    in_.resize(old + read_size_);
    std::size_t got = 0;
    try {
      got = stream_.recv_into(std::span<char>(in_.data() + old, read_size_));
    } catch (...) {
      in_.resize(old);
      throw;
    }
    in_.resize(old + got);
    if (got == 0) eof_ = true;
  }

  std::string take(std::size_t size) {
    std::string result = in_.substr(0, size);
    in_.erase(0, size);
    return result;
  }

  Stream& stream_;
  std::size_t read_size_;
  std::size_t write_size_;
  bool eof_ = false;
  std::string in_;
  std::string out_;
};

}  // namespace greenev
