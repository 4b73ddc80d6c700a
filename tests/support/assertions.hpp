// tests/support/assertions.hpp — assertion helpers shared by the test suites.
//
//   EXPECT_TRUE(greenev::testing::throws_with<greenev::greenlet_error>(
//       [&] { g.switch_to(); }, "another thread"));
//   EXPECT_TRUE(greenev::testing::throws_errno([&] { s.recv(1); }, EBADF));
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>

#include <gtest/gtest.h>

namespace greenev::testing {

/// Succeeds if calling `function` throws an `Exception` whose what() contains
/// `expected`; otherwise explains what happened instead (nothing thrown,
/// another type, another message).
template <class Exception, class Function>
::testing::AssertionResult throws_with(Function&& function, std::string_view expected) {
  try {
    function();
  } catch (const Exception& error) {
    const std::string_view message = error.what();
    if (message.find(expected) != std::string_view::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "threw " << typeid(Exception).name() << " with message \""
                                         << message << "\", which does not contain \"" << expected << "\"";
  } catch (const std::exception& other) {
    return ::testing::AssertionFailure() << "threw " << typeid(other).name() << " (\"" << other.what()
                                         << "\") instead of " << typeid(Exception).name();
  } catch (...) {
    return ::testing::AssertionFailure()
           << "threw a non-std::exception instead of " << typeid(Exception).name();
  }
  return ::testing::AssertionFailure()
         << "threw nothing; expected " << typeid(Exception).name() << " containing \"" << expected << "\"";
}

/// Succeeds if calling `function` throws a std::system_error with errno
/// `code` whose what() contains `expected` (anything, if empty).
template <class Function>
::testing::AssertionResult throws_errno(Function&& function, int code, std::string_view expected = {}) {
  try {
    function();
  } catch (const std::system_error& error) {
    if (error.code().value() != code) {
      return ::testing::AssertionFailure()
             << "threw errno " << error.code().value() << " (\"" << error.what() << "\") instead of " << code;
    }
    if (std::string_view(error.what()).find(expected) == std::string_view::npos) {
      return ::testing::AssertionFailure()
             << "threw \"" << error.what() << "\", which does not contain \"" << expected << "\"";
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& other) {
    return ::testing::AssertionFailure() << "threw " << typeid(other).name() << " (\"" << other.what()
                                         << "\") instead of std::system_error " << code;
  }
  return ::testing::AssertionFailure() << "threw nothing; expected std::system_error with errno " << code;
}

}  // namespace greenev::testing
