// Private: the intrusive doubly-linked FIFO behind wait_list (waiters) and a
// task's links. Nodes live wherever their owner put them (usually a waiting
// greenlet's stack); the list only points at them, so linking and unlinking
// never allocate. Not thread-safe: the hub's thread only.
#pragma once

#include <cstddef>

namespace greenev::detail {

template <class Node>
class intrusive_fifo;

// Derive Node from fifo_hook<Node> to make it linkable into one list.
template <class Node>
class fifo_hook {
 public:
  /// The list it is in, or nullptr.
  [[nodiscard]] intrusive_fifo<Node>* fifo() const noexcept { return list_; }
  [[nodiscard]] Node* fifo_next() const noexcept { return next_; }

 private:
  friend class intrusive_fifo<Node>;
  Node* prev_ = nullptr;
  Node* next_ = nullptr;
  intrusive_fifo<Node>* list_ = nullptr;
};

template <class Node>
class intrusive_fifo {
 public:
  intrusive_fifo() = default;
  intrusive_fifo(const intrusive_fifo&) = delete;
  intrusive_fifo& operator=(const intrusive_fifo&) = delete;
  ~intrusive_fifo() {  // unlinks whoever is left
    while (pop_front() != nullptr) {
    }
  }

  /// Appends `node`, first unlinking it from any list it is in.
  void push_back(Node& node) noexcept {
    fifo_hook<Node>& hook = node;
    if (hook.list_ != nullptr) hook.list_->remove(node);
    hook.list_ = this;
    hook.prev_ = tail_;
    hook.next_ = nullptr;
    if (tail_ != nullptr) {
      hook_of(*tail_).next_ = &node;
    } else {
      head_ = &node;
    }
    tail_ = &node;
    ++size_;
  }
  /// Unlinks `node` if it is in this list; otherwise does nothing.
  void remove(Node& node) noexcept {
    fifo_hook<Node>& hook = node;
    if (hook.list_ != this) return;
    if (hook.prev_ != nullptr) {
      hook_of(*hook.prev_).next_ = hook.next_;
    } else {
      head_ = hook.next_;
    }
    if (hook.next_ != nullptr) {
      hook_of(*hook.next_).prev_ = hook.prev_;
    } else {
      tail_ = hook.prev_;
    }
    hook.prev_ = hook.next_ = nullptr;
    hook.list_ = nullptr;
    --size_;
  }
  /// Unlinks and returns the first node, or nullptr.
  Node* pop_front() noexcept {
    Node* node = head_;
    if (node != nullptr) remove(*node);
    return node;
  }
  [[nodiscard]] Node* front() const noexcept { return head_; }
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  static fifo_hook<Node>& hook_of(Node& node) noexcept { return node; }
  Node* head_ = nullptr;
  Node* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace greenev::detail
