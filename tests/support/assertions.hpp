// tests/support/assertions.hpp — assertion helpers shared by the test suites.
//
//   EXPECT_TRUE(greenev::testing::throws_with<greenev::greenlet_error>(
//       [&] { g.switch_to(); }, "another thread"));
#pragma once

#include <exception>
#include <string>
#include <string_view>
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

}  // namespace greenev::testing
