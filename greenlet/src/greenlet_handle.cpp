// The greenlet handle: construction, reference counting, and the queries
// and changes the greenlet class offers; also a greenlet's name.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "greenlet_internal.hpp"

namespace greenev::detail {

greenlet_impl::greenlet_impl() noexcept = default;
greenlet_impl::~greenlet_impl() {
  release_locals();
  if (body != nullptr) destroy_body();
  delete name.load(std::memory_order_relaxed);
#ifndef NDEBUG
  refs.store(freed_greenlet_refs, std::memory_order_relaxed);
#endif
}

namespace {
std::string default_name(const greenlet_impl& g) {
  return g.is_main ? "main" : "greenlet-" + std::to_string(g.id);
}
}  // namespace

// Several threads may ask at once (error messages name greenlets of other
// threads): the first to publish wins, the others drop their copy. Nothing
// is freed here, so a reader of the old (null) value needs no protection.
const std::string& greenlet_impl::display_name() const {
  if (const std::string* known = name.load(std::memory_order_acquire); known != nullptr) return *known;
  auto built = std::make_unique<std::string>(default_name(*this));
  std::string* published = nullptr;
  if (name.compare_exchange_strong(published, built.get(), std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
    return *built.release();
  }
  return *published;
}

std::string greenlet_impl::name_copy() const {
  std::lock_guard lock(anchor->mutex);  // against set_name() on the owner thread
  if (const std::string* known = name.load(std::memory_order_acquire); known != nullptr) return *known;
  return default_name(*this);
}

namespace {

// Ids are unique in the process; threads take them in blocks, so creating a
// greenlet costs no atomic operation here.
std::atomic<std::uint64_t> next_id_block{1};
constexpr std::uint64_t id_block_size = 4096;
thread_local std::uint64_t next_local_id = 0;
thread_local std::uint64_t local_id_limit = 0;

}  // namespace

std::uint64_t new_greenlet_id() noexcept {
  if (next_local_id == local_id_limit) [[unlikely]] {
    next_local_id = next_id_block.fetch_add(id_block_size, std::memory_order_relaxed);
    local_id_limit = next_local_id + id_block_size;
  }
  return next_local_id++;
}

}  // namespace greenev::detail

namespace greenev {

using detail::greenlet_impl;
using detail::local_state;

greenlet::greenlet(new_greenlet_tag, greenlet_impl* parent, greenlet_options options) {
  detail::thread_state& ts = local_state();
  if (parent == nullptr) {
    parent = ts.current;
  } else {
    detail::checked(parent, ts, "parent a new greenlet to");
  }
  const std::size_t size =
      options.stack_size == 0 ? 0 : detail::checked_stack_size(options.stack_size, "greenlet");
  auto* g = new greenlet_impl;
  g->requested_size = size;
  g->kind = options.kind;
  if (!options.name.empty())
    g->name.store(new std::string(std::move(options.name)), std::memory_order_relaxed);
  g->id = detail::new_greenlet_id();
  g->anchor = ts.anchor;
  ++ts.greenlets;
  if (detail::option_prefault.load(std::memory_order_relaxed) == stack_prefault::background) [[unlikely]]
    g->prefault_expected = ts.pool->expect_start(size, options.kind);
  detail::add_parent_ref(parent);
  g->parent = parent;
  impl_ = g;
}

greenlet::greenlet(const greenlet& other) noexcept : impl_(other.impl_) {
  if (impl_ != nullptr) impl_->add_ref();
}

greenlet& greenlet::operator=(const greenlet& other) noexcept {
  greenlet copy(other);
  std::swap(impl_, copy.impl_);
  return *this;
}

greenlet& greenlet::operator=(greenlet&& other) noexcept {
  greenlet moved(std::move(other));
  std::swap(impl_, moved.impl_);
  return *this;
}

greenlet::~greenlet() {
  if (impl_ != nullptr) detail::release(impl_);
}

greenlet greenlet::adopt(greenlet_impl* impl) noexcept {
  greenlet g;
  g.impl_ = impl;
  return g;
}

greenlet greenlet::current() {
  greenlet_impl* g = local_state().current;
  g->add_ref();
  return adopt(g);
}

greenlet_impl* greenlet::require() const {
  if (impl_ == nullptr) throw greenlet_error("greenev: operation on an empty greenlet handle");
  return impl_;
}

std::any greenlet::throw_into(std::exception_ptr error) const {
  greenlet_impl* target = require();
  detail::thread_state& ts = local_state();
  detail::checked(target, ts, "throw into");
  if (!error) throw greenlet_error("greenev: throw_into " + target->display_name() + ": null exception_ptr");
  if (target->dead()) return {};
  ts.error = std::move(error);
  return detail::switch_now(ts, target);
}

std::any detail::switch_to_parent_slow(std::any&& value) {
  detail::thread_state& ts = local_state();
  greenlet_impl* parent = ts.current->parent;
  if (parent == nullptr) throw greenlet_error("greenev: switch_to_parent from a main greenlet");
  ts.value = std::move(value);
  return detail::switch_now(ts, parent);
}

std::size_t active_greenlet_count() noexcept {
  return detail::tls_state != nullptr ? detail::tls_state->active_count : 0;
}

bool greenlet::is_main() const {
  return require()->is_main;
}

greenlet greenlet::parent() const {
  greenlet_impl* p = require()->parent;
  if (p == nullptr) return {};
  p->add_ref();
  return adopt(p);
}

void greenlet::set_parent(const greenlet& new_parent) {
  greenlet_impl* self = require();
  detail::thread_state& ts = local_state();
  detail::checked(self, ts, "reparent");
  if (!new_parent) throw greenlet_error("greenev: set_parent of " + self->display_name() + ": empty parent");
  greenlet_impl* p = detail::checked(new_parent.impl_, ts, "make a parent of");
  if (self->is_main) throw greenlet_error("greenev: a main greenlet cannot have a parent");
  for (greenlet_impl* a = p; a != nullptr; a = a->parent) {
    if (a == self) {
      throw greenlet_error("greenev: set_parent: making " + p->display_name() + " the parent of " +
                           self->display_name() + " would create a cycle");
    }
  }
  detail::add_parent_ref(p);
  detail::release(detail::release_parent_ref(std::exchange(self->parent, p)));
}

const std::string& greenlet::name() const {
  return require()->display_name();
}

void greenlet::set_name(std::string name) {
  greenlet_impl* g = require();
  detail::thread_state& ts = local_state();
  detail::checked(g, ts, "rename");
  // An empty name means the default one again.
  auto renamed = name.empty() ? nullptr : std::make_unique<std::string>(std::move(name));
  detail::before_freeing_or_renaming(ts);
  std::unique_ptr<std::string> old;
  {
    std::lock_guard lock(g->anchor->mutex);  // against name_copy() on other threads
    old.reset(g->name.exchange(renamed.release(), std::memory_order_acq_rel));
  }
  // Publishes the new name to a monitor reading the running greenlet.
  if (ts.current == g) detail::publish_current(ts, g);
}

std::size_t greenlet::stack_size() const {
  greenlet_impl* g = require();
  if (g->is_main) return 0;
  if (g->stack) return g->stack.size;
  return g->requested_size != 0 ? g->requested_size : default_stack_options().size;
}

stack_statistics stack_stats() noexcept {
  stack_statistics stats = detail::process_stack_stats();
  if (detail::tls_state != nullptr) stats.pooled = detail::tls_state->pool->pooled();
  return stats;
}

void trim_stack_pool() noexcept {
  if (detail::tls_state != nullptr) detail::tls_state->pool->trim();
}

}  // namespace greenev
