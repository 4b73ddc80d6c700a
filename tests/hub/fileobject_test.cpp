// Tests for greenev/fileobject.hpp: nb_read/nb_write over pipes between
// greenlets (a megabyte through a 64 KiB pipe, EPIPE without SIGPIPE),
// tp_read/tp_write on a regular file, a caller killed during tp_read;
// file_object on a regular file (threadpool) and on a pipe (non-blocking
// waits): readline across partial writes, the max length, read_all, write
// buffering and flush, an fd it does not own left open with its flags back,
// and bad input.
#include <greenev/fileobject.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include <greenev/io.hpp>
#include <greenev/task.hpp>

#include "support/assertions.hpp"
#include "support/hub_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::file_object;
using greenev::testing::throws_with;

class fileobject_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    hub_test::SetUp();
    ASSERT_EQ(::pipe2(pipe_, O_CLOEXEC), 0);
    directory_ =
        std::filesystem::temp_directory_path() / ("greenev-fileobject-" + std::to_string(::getpid()));
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override {
    for (int fd : pipe_) {
      if (fd >= 0) greenev::close_fd(fd);
    }
    std::filesystem::remove_all(directory_);
    hub_test::TearDown();
  }
  int pipe_[2] = {-1, -1};
  std::filesystem::path directory_;
};

TEST_F(fileobject_test, nb_read_and_nb_write_move_a_megabyte_through_a_pipe) {
  greenev::set_non_blocking(pipe_[0]);
  greenev::set_non_blocking(pipe_[1]);
  std::string sent;
  for (int i = 0; sent.size() < (1 << 20); ++i) sent += "block " + std::to_string(i) + "\n";
  auto writer = greenev::spawn([&] {
    std::string_view rest = sent;
    while (!rest.empty()) rest.remove_prefix(greenev::nb_write(pipe_[1], rest));
    greenev::close_fd(pipe_[1]);
    pipe_[1] = -1;
  });
  std::string received;
  char buffer[4096];
  while (const std::size_t got = greenev::nb_read(pipe_[0], buffer)) received.append(buffer, got);
  writer.get(10s);
  EXPECT_EQ(received, sent);
}

TEST_F(fileobject_test, nb_write_to_a_pipe_nobody_reads_is_epipe_not_sigpipe) {
  greenev::set_non_blocking(pipe_[1]);
  greenev::close_fd(pipe_[0]);
  pipe_[0] = -1;
  EXPECT_TRUE(greenev::testing::throws_errno([&] { (void)greenev::nb_write(pipe_[1], "x"); }, EPIPE));
}

TEST_F(fileobject_test, tp_read_and_tp_write_use_a_regular_file) {
  const std::string path = (directory_ / "data").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(greenev::tp_write(fd, "hello, file"), 11u);
  ASSERT_EQ(::lseek(fd, 0, SEEK_SET), 0);
  char buffer[64];
  EXPECT_EQ(std::string(buffer, greenev::tp_read(fd, buffer)), "hello, file");
  EXPECT_EQ(greenev::tp_read(fd, buffer), 0u);  // end of file
  ::close(fd);
  EXPECT_THROW((void)greenev::tp_read(-1, buffer), std::system_error);
}

TEST_F(fileobject_test, a_caller_killed_during_tp_read_leaves_nothing_to_write_into) {
  // A FIFO with a writer that never writes: the worker's read blocks until we
  // write below, after the caller is gone.
  const std::string path = (directory_ / "fifo").string();
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  const int reader = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  const int writer = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  ASSERT_GE(writer, 0);
  ASSERT_EQ(::fcntl(reader, F_SETFL, 0), 0);  // blocking: the worker waits in read
  auto caller = greenev::spawn([reader] {
    char buffer[16];
    return greenev::tp_read(reader, buffer);
  });
  greenev::sleep(0.05);
  caller.kill();
  ASSERT_EQ(::write(writer, "late", 4), 4);  // the worker finishes into its own buffer
  greenev::sleep(0.05);
  ::close(writer);
  ::close(reader);
}

TEST_F(fileobject_test, a_regular_file_object_goes_through_the_threadpool) {
  const std::string path = (directory_ / "lines.txt").string();
  {
    file_object out = file_object::open(path, "w");
    EXPECT_TRUE(out.uses_threadpool());
    for (int i = 0; i < 1000; ++i) out.write("line " + std::to_string(i) + "\n");
    out.write("last without newline");
  }  // flushed and closed
  file_object in = file_object::open(path, "rb");
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(in.readline(), "line " + std::to_string(i) + "\n");
  EXPECT_EQ(in.readline(), "last without newline");
  EXPECT_EQ(in.readline(), "");
  in.close();
  EXPECT_TRUE(in.closed());
  file_object again = file_object::open(path, "r");
  EXPECT_EQ(again.read_all().size(), std::filesystem::file_size(path));
  file_object appended = file_object::open(path, "a");
  appended.write("!");
  appended.close();
  EXPECT_EQ(file_object::open(path).read_all().back(), '!');
}

TEST_F(fileobject_test, a_pipe_file_object_reads_lines_across_partial_writes) {
  file_object in(pipe_[0]);
  pipe_[0] = -1;  // owned now
  EXPECT_FALSE(in.uses_threadpool());
  int ticks = 0;
  auto writer = greenev::spawn([&] {
    file_object out(pipe_[1]);
    pipe_[1] = -1;
    for (const char* piece : {"hel", "lo\nwor", "ld\n", "tail"}) {
      out.write(piece);
      out.flush();
      greenev::sleep(0.02);
      ++ticks;
    }
  });  // closes the write end when done
  EXPECT_EQ(in.readline(), "hello\n");
  EXPECT_EQ(in.readline(), "world\n");
  EXPECT_EQ(in.readline(), "tail");
  EXPECT_EQ(in.readline(), "");
  EXPECT_EQ(ticks, 4) << "the writer ran while the reader waited";
  writer.get(5s);
}

TEST_F(fileobject_test, readline_stops_at_max_and_read_some_returns_what_is_there) {
  file_object in(pipe_[0]);
  pipe_[0] = -1;
  ASSERT_EQ(::write(pipe_[1], "abcdefghij\nrest", 15), 15);
  ::close(std::exchange(pipe_[1], -1));
  EXPECT_EQ(in.readline(4), "abcd");
  EXPECT_EQ(in.readline(), "efghij\n");
  EXPECT_EQ(in.read_some(2), "re");
  EXPECT_EQ(in.read_all(), "st");
  EXPECT_EQ(in.read_some(), "");
}

TEST_F(fileobject_test, an_fd_it_does_not_own_stays_open_with_its_flags_back) {
  const int flags = ::fcntl(pipe_[0], F_GETFL);
  ASSERT_EQ(flags & O_NONBLOCK, 0);
  {
    file_object borrowed(pipe_[0], {.close = false});
    EXPECT_NE(::fcntl(pipe_[0], F_GETFL) & O_NONBLOCK, 0);
  }
  EXPECT_EQ(::fcntl(pipe_[0], F_GETFL), flags);
  EXPECT_EQ(::write(pipe_[1], "x", 1), 1);
  char byte = 0;
  EXPECT_EQ(::read(pipe_[0], &byte, 1), 1);
}

TEST_F(fileobject_test, bad_input_is_refused) {
  EXPECT_THROW(file_object(-1), std::system_error);
  EXPECT_TRUE(throws_with<std::invalid_argument>([&] { (void)file_object::open("x", "rw"); }, "bad mode"));
  EXPECT_TRUE(throws_with<std::system_error>(
      [&] { (void)file_object::open((directory_ / "missing").string()); }, "missing"));
  file_object in(pipe_[0]);
  pipe_[0] = -1;
  in.close();
  in.close();  // idempotent
  EXPECT_THROW((void)in.readline(), std::system_error);
  EXPECT_THROW(in.write("x"), std::system_error);
}

}  // namespace
