// greenev/fork.hpp — fork(2) that keeps greenev working in the child
// (gevent.fork, gevent.reinit).
//
//   pid_t pid = greenev::fork();            // the child continues here, in this greenlet
//   if (pid == 0) { greenev::sleep(0.1); ...; std::_Exit(0); }
//   int status = 0; ::waitpid(pid, &status, 0);  // (or a pidfd and greenev::poll)
//
// The child continues in the calling greenlet with the calling thread's hub
// made whole again: its libev loop gets its own epoll set (the inherited one
// is the parent's kernel object), timers, sockets, greenlets and spawns
// work; the thread's threadpools start new workers (their old ones were
// threads the child does not have: a job such a worker was running fails
// with threadpool_closed, queued jobs run); the resolver makes new c-ares
// channels on next use. The parent is untouched.
// Threading: the child has only the calling thread. Other threads' hubs,
// greenlets, servers and threadpools are gone in it (their memory is still
// there, never to be used or freed): fork from the thread that owns what
// the child will use, normally the main thread. docs/caveats.md, "fork".
#pragma once

#include <sys/types.h>

namespace greenev {

/// ::fork(), then reinit() in the child. Returns the child's pid in the
/// parent and 0 in the child, which continues in the calling greenlet (the
/// other greenlets of the thread are there too and run when it waits).
/// Never switches. Throws std::system_error if fork(2) fails (nothing
/// changed).
pid_t fork();

/// Makes the calling thread's hub, threadpools and per-thread services whole
/// in a child made by ::fork() (fork() calls it for you): call it in the
/// child before any other greenev call. Does nothing if no fork happened
/// since the last reinit(), or if greenev had no hub when the process
/// forked, so calling it twice is harmless. Only the thread that called
/// ::fork() (the child's only thread) can be made whole. Never switches,
/// never throws (a threadpool that cannot start a worker reports it and
/// starts one on its next job).
void reinit() noexcept;

}  // namespace greenev
