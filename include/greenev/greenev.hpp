// greenev/greenev.hpp — everything greenev offers, in one include.
//
//   #include <greenev/greenev.hpp>
//
// Layers (each header documents itself): greenlet.hpp and stack.hpp (raw
// greenlets); the hub, cooperative IO and monkey patching join as they land.
#pragma once

#include <greenev/errors.hpp>
#include <greenev/greenlet.hpp>
#include <greenev/stack.hpp>
#include <greenev/version.hpp>
