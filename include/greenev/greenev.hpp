// greenev/greenev.hpp — everything greenev offers, in one include.
//
//   #include <greenev/greenev.hpp>
//   auto t = greenev::spawn([] { greenev::sleep(0.1); return 42; });
//   int v = t.get();
//
// Each header documents itself: greenlet.hpp and stack.hpp (raw greenlets,
// switch_to); hub.hpp (the per-thread loop, sleep); task.hpp (spawn, join,
// kill); timeout.hpp; event.hpp (event, async_result).
#pragma once

#include <greenev/errors.hpp>
#include <greenev/event.hpp>
#include <greenev/greenlet.hpp>
#include <greenev/hub.hpp>
#include <greenev/stack.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>
#include <greenev/version.hpp>
