#pragma once
// The small-object heap of a Python sandbox child (private to wf_python_runtime).
//
// A child is forked from the zygote and serves one call. Left to CPython's own allocators, the
// call's new objects land in the free blocks that the zygote's pymalloc pools and malloc heap
// still have, scattered over many pages the child shares with the zygote: every first write to
// one of them is a copy-on-write fault (~2 us here: a trap, a page allocation and a 4 KiB copy).
// FreshHeap serves those allocations from memory the child maps itself instead, packed by size
// class, so a call touches a few fresh pages (zero-fill faults, ~1 us) instead of many shared
// ones. The classes of up to 256 bytes (most of CPython's objects) take pools of 1 KiB, carved
// one after the other from chunks of their own, so that the few blocks a short call takes of each
// such class share pages (a 64 KiB pool per class, as the larger classes have, made a trivial
// call touch one fresh page per class used: ~19). Nothing is shared between calls: the heap is
// created empty in each child and dies with it; blocks the zygote allocated are still freed by the
// allocator that made them.
//
// Bounded: at most kMaxChunks chunks; past that, or for blocks larger than kLargestBlock, the
// caller uses CPython's allocator as before. Its mappings count against the child's RLIMIT_AS /
// RLIMIT_DATA like any other. Single-threaded, like the child.

#include <array>
#include <cstddef>
#include <cstdint>

namespace wf::evaluator::python_internal {

class FreshHeap {
 public:
  static constexpr std::size_t kChunkBytes = std::size_t{1} << 20;  // one mmap, aligned to its size
  static constexpr std::size_t kPoolBytes = std::size_t{64} << 10;  // one size class per pool
  static constexpr std::size_t kSmallPoolBytes = std::size_t{1} << 10;  // for the small classes
  static constexpr std::size_t kSmallPoolLimit = 256;  // largest class in small pools
  static constexpr std::size_t kMaxChunks = 16;        // 16 MiB of small objects
  static constexpr std::size_t kLargestBlock = 16384;

  // A block of at least `bytes` (16-byte aligned), or nullptr when this heap does not serve it
  // (too large, the cap is reached, or the mapping failed): then use the previous allocator.
  void* allocate(std::size_t bytes);
  // Whether `block` (non-null) came from allocate().
  bool owns(const void* block) const;
  // Usable bytes of an owned block (its size class).
  std::size_t capacity(const void* block) const;
  // Returns an owned block for reuse by allocations of its size class.
  void release(void* block);

  std::size_t chunks() const { return chunk_count_; }

 private:
  static constexpr std::size_t kClasses = 43;  // 16..512 by 16, then 640..16384
  struct ClassState {
    void* free = nullptr;  // singly linked through the first word of each freed block
    char* next = nullptr;  // bump pointer in the class's current pool
    char* end = nullptr;
  };

  // Where pools of one size are carved from: the newest chunk of that kind.
  struct PoolSource {
    char* next = nullptr;
    char* end = nullptr;
  };

  static std::size_t class_of(std::size_t bytes);
  static std::size_t class_bytes(std::size_t index);
  static bool small_class(std::size_t index) { return class_bytes(index) <= kSmallPoolLimit; }
  char* take_pool(bool small);
  // The pool size of the chunk that holds `block` (owned).
  std::size_t pool_bytes_of(const void* block) const;

  std::array<ClassState, kClasses> classes_{};
  std::array<std::uintptr_t, kMaxChunks> chunk_bases_{};
  std::array<bool, kMaxChunks> chunk_small_{};  // its pools are kSmallPoolBytes
  std::size_t chunk_count_ = 0;
  PoolSource small_pools_;
  PoolSource pools_;
};

}  // namespace wf::evaluator::python_internal
