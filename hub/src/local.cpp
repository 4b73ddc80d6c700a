// Greenlet-local storage. Every value lives in a `slot` that is on two lists:
// its greenlet's table (greenlet_impl::locals, touched only by that
// greenlet's thread) and its key's list (guarded by one process-wide mutex).
// Whichever dies first — the greenlet or the greenlet_local — destroys the
// value and unlinks the slot from the key's list under the mutex. A key
// that dies only marks its slots dead; the slot memory stays in the
// greenlet's table (only that thread may touch the table) until the table
// is next changed or freed. Lookups compare immutable 64-bit key ids, never
// reused, so a dead slot can never match a newer key and a lookup takes no
// lock.
#include <greenev/local.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <vector>

#include <greenev/error_reporter.hpp>

#include "fork_internal.hpp"

namespace greenev::detail {

struct local_key::slot {
  const std::uint64_t id;  // the key's id; immutable, read without the lock
  local_key* key;          // null once the key is gone (mutex)
  slot* prev = nullptr;    // in the key's list (mutex)
  slot* next = nullptr;
  void* value;  // null once the key is gone (mutex)
  void (*destroy)(void*) noexcept;

  void unlink() noexcept {
    if (prev != nullptr) {
      prev->next = next;
    } else {
      key->head_ = next;
    }
    if (next != nullptr) next->prev = prev;
    prev = next = nullptr;
  }
};

namespace {

using slot = local_key::slot;

// Never destroyed: greenlets (a thread's main greenlet at exit) and
// static greenlet_locals may release values during static destruction.
std::mutex& registry_mutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}

}  // namespace

// Held across fork(2) (fork.cpp): a greenlet's values released on another
// thread must not leave it locked in the child.
void lock_locals_for_fork() noexcept {
  registry_mutex().lock();
}
void unlock_locals_after_fork() noexcept {
  registry_mutex().unlock();
}

namespace {

std::atomic<std::uint64_t> next_key_id{1};

// One greenlet's values, in creation order.
struct local_table {
  struct entry {
    std::uint64_t id;
    slot* value_slot;
  };
  greenlet_impl* owner;
  std::vector<entry> entries;
};

struct destroy_call {
  void* value;
  void (*destroy)(void*) noexcept;
};

// Caps how often value destructors may create new values on a dying
// greenlet (as POSIX caps thread-specific destructor rounds).
constexpr int max_destroy_rounds = 8;

// greenlet_impl::destroy_locals: the greenlet died or is being freed.
void destroy_table(void* raw) noexcept {
  auto* table = static_cast<local_table*>(raw);
  greenlet_impl* owner = table->owner;
  for (int round = 0; table != nullptr; ++round) {
    if (round == max_destroy_rounds) {
      // Its slots stay linked to their keys, which destroy the values later.
      report_error("greenev: greenlet-local destructors keep creating new values; leaving them");
      return;
    }
    {
      // Slots still linked are ours once unlinked; a dead key's slot has no
      // value left (the key took it).
      std::lock_guard lock(registry_mutex());
      for (const local_table::entry& e : table->entries) {
        if (e.value_slot->key != nullptr) e.value_slot->unlink();
      }
    }
    for (auto it = table->entries.rbegin(); it != table->entries.rend(); ++it) {
      slot* s = it->value_slot;
      if (s->value != nullptr) s->destroy(s->value);
      delete s;
    }
    delete table;
    // A destructor that touched a greenlet_local on this greenlet made a new table.
    table = owner->hub.destroy_locals == destroy_table
                ? static_cast<local_table*>(std::exchange(owner->hub.locals, nullptr))
                : nullptr;
  }
}

greenlet_impl* calling_greenlet() {
  if (tls_state == nullptr) (void)greenlet::current();  // creates the thread's state
  return tls_state->current;
}

local_table* table_of(const greenlet_impl* g) noexcept {
  return g->hub.destroy_locals == destroy_table ? static_cast<local_table*>(g->hub.locals) : nullptr;
}

}  // namespace

local_key::local_key() noexcept : id_(next_key_id.fetch_add(1, std::memory_order_relaxed)) {}

local_key::~local_key() {
  std::vector<destroy_call> calls;
  {
    std::lock_guard lock(registry_mutex());
    for (slot* s = head_; s != nullptr;) {
      slot* next = s->next;
      s->key = nullptr;
      s->prev = s->next = nullptr;
      try {
        calls.push_back({std::exchange(s->value, nullptr), s->destroy});
      } catch (...) {
        s->destroy(std::exchange(s->value, nullptr));
      }
      s = next;
    }
    head_ = nullptr;
  }
  for (auto it = calls.rbegin(); it != calls.rend(); ++it) it->destroy(it->value);
}

void* local_key::find() const noexcept {
  const thread_state* ts = tls_state;
  if (ts == nullptr) return nullptr;
  const local_table* table = table_of(ts->current);
  if (table == nullptr) return nullptr;
  for (const local_table::entry& e : table->entries) {
    if (e.id == id_) return e.value_slot->value;
  }
  return nullptr;
}

void* local_key::insert(void* value, void (*destroy)(void*) noexcept) {
  struct owner {
    void* value;
    void (*destroy)(void*) noexcept;
    ~owner() {
      if (value != nullptr) destroy(value);
    }
  } pending{value, destroy};

  if (void* existing = find()) return existing;  // made meanwhile (a recursive get())
  greenlet_impl* g = calling_greenlet();
  if (g->hub.destroy_locals != nullptr && g->hub.destroy_locals != destroy_table) {
    throw greenlet_error("greenev: greenlet " + g->display_name() +
                         " has per-greenlet storage that greenlet_local does not own");
  }
  local_table* table = table_of(g);
  if (table == nullptr) {
    table = new local_table{g, {}};
    g->hub.locals = table;
    g->hub.destroy_locals = destroy_table;
  }
  auto new_slot = std::make_unique<slot>(slot{id_, this, nullptr, nullptr, value, destroy});
  if (table->entries.size() == table->entries.capacity())
    table->entries.reserve(2 * table->entries.size() + 4);
  {
    std::lock_guard lock(registry_mutex());
    // Drop slots whose key is gone, now that the table changes anyway.
    std::erase_if(table->entries, [](const local_table::entry& e) {
      if (e.value_slot->key != nullptr) return false;
      delete e.value_slot;
      return true;
    });
    table->entries.push_back({id_, new_slot.get()});  // capacity reserved above
    new_slot->next = head_;
    if (head_ != nullptr) head_->prev = new_slot.get();
    head_ = new_slot.release();
  }
  pending.value = nullptr;
  return value;
}

bool local_key::erase() noexcept {
  const thread_state* ts = tls_state;
  if (ts == nullptr) return false;
  local_table* table = table_of(ts->current);
  if (table == nullptr) return false;
  slot* found = nullptr;
  {
    std::lock_guard lock(registry_mutex());
    for (auto it = table->entries.begin(); it != table->entries.end(); ++it) {
      if (it->id == id_) {
        found = it->value_slot;
        table->entries.erase(it);
        found->unlink();
        break;
      }
    }
  }
  if (found == nullptr) return false;
  found->destroy(found->value);
  delete found;
  return true;
}

}  // namespace greenev::detail
