// greenev/greenev.hpp — everything greenev offers, in one include.
//
//   #include <greenev/greenev.hpp>
//   auto t = greenev::spawn([] { greenev::sleep(0.1); return 42; });
//   int v = t.get();
//
// Each header documents itself: greenlet.hpp and stack.hpp (raw greenlets,
// switch_to); hub.hpp (the per-thread loop, sleep); task.hpp (spawn, join,
// kill, joinall, iwait); timeout.hpp; event.hpp (event, async_result);
// semaphore.hpp (semaphore, mutex/lock, rlock); queue.hpp (queues,
// channel); pool.hpp (group, pool, imap); local.hpp (greenlet_local);
// threadpool.hpp; signal.hpp (signal_handler); subprocess.hpp; fork.hpp;
// fileobject.hpp; error_reporter.hpp (where diagnostics go); address.hpp,
// socket.hpp, buffered_stream.hpp, server.hpp, datagram_server.hpp,
// select.hpp, dns.hpp and tls.hpp (greenev::net); monkey.hpp (libc
// interposition, greenev::monkey); http_server.hpp, beast_stream.hpp and
// websocket.hpp (HTTP and WebSockets, greenev::web).
#pragma once

#include <greenev/address.hpp>
#include <greenev/beast_stream.hpp>
#include <greenev/buffered_stream.hpp>
#include <greenev/datagram_server.hpp>
#include <greenev/dns.hpp>
#include <greenev/error_reporter.hpp>
#include <greenev/errors.hpp>
#include <greenev/event.hpp>
#include <greenev/fileobject.hpp>
#include <greenev/fork.hpp>
#include <greenev/greenlet.hpp>
#include <greenev/http_server.hpp>
#include <greenev/hub.hpp>
#include <greenev/io.hpp>
#include <greenev/local.hpp>
#include <greenev/monitor.hpp>
#include <greenev/monkey.hpp>
#include <greenev/pool.hpp>
#include <greenev/queue.hpp>
#include <greenev/run_info.hpp>
#include <greenev/select.hpp>
#include <greenev/semaphore.hpp>
#include <greenev/server.hpp>
#include <greenev/signal.hpp>
#include <greenev/socket.hpp>
#include <greenev/stack.hpp>
#include <greenev/subprocess.hpp>
#include <greenev/task.hpp>
#include <greenev/threadpool.hpp>
#include <greenev/timeout.hpp>
#include <greenev/tls.hpp>
#include <greenev/version.hpp>
#include <greenev/wait.hpp>
#include <greenev/websocket.hpp>
