// greenev/errors.hpp — the exception types of the greenlet layer.
//
// Policy (docs/errors.md): the C++ API throws; control-flow exceptions such
// as greenlet_exit live outside the std::exception tree, like
// boost::context's forced_unwind, so generic handlers cannot swallow them.
#pragma once

#include <stdexcept>

namespace greenev {

/// Thrown into a greenlet to end it quietly (the default for
/// greenlet::throw_into() and what destroying the last handle to a suspended
/// greenlet raises). When it escapes the greenlet's function it is not an
/// error: the parent's pending switch_to() returns it as a value (a std::any
/// holding greenlet_exit). Not derived from std::exception, so
/// `catch (const std::exception&)` cannot swallow it; `catch (...)` blocks
/// inside greenlets must rethrow it.
class greenlet_exit {};

/// Misuse of the greenlet API: switching to a greenlet of another thread, an
/// empty handle, a parent cycle, an invalid stack size. The message names the
/// greenlet involved.
class greenlet_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace greenev
