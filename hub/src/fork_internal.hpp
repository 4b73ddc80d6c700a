// Private: the hub layer's part in fork(2) (fork.cpp; docs/design.md, "fork").
// Each lock another thread may hold at fork time is taken by the prepare
// handler and released by the parent's and the child's; what the child must
// remake on its one thread is done by reinit().
#pragma once

namespace greenev::detail {

// Registers the hub layer's pthread_atfork handlers (once; after the greenlet
// layer's, so that its prepare runs first). Called when a hub or a
// threadpool is made.
void register_hub_fork_handlers() noexcept;

// threadpool.cpp: the registry of live threadpools and each one's lock.
void lock_threadpools_for_fork() noexcept;
void unlock_threadpools_after_fork() noexcept;
// In the child, on the calling thread: its threadpools forget their workers.
void threadpools_after_fork_in_child() noexcept;

// monitor.cpp: the blocking monitor's lock; in the child, the monitor thread
// is gone: forgotten by the child handler, started again by reinit().
void lock_monitor_for_fork() noexcept;
void unlock_monitor_in_parent() noexcept;
void reset_monitor_in_child() noexcept;
void restart_monitor_after_fork() noexcept;

// hub.cpp: the table of ready-queue discarders.
void lock_discarders_for_fork() noexcept;
void unlock_discarders_after_fork() noexcept;

// local.cpp: the greenlet-locals registry.
void lock_locals_for_fork() noexcept;
void unlock_locals_after_fork() noexcept;

}  // namespace greenev::detail
