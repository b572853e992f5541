#include "evaluator/executors/python/fresh_heap.h"

#include <sys/mman.h>

namespace wf::evaluator::python_internal {
namespace {

// The classes above 512 bytes (CPython's own small-object limit): dict key tables, list item
// arrays, medium strings, the parser's arena blocks (8 KiB and a 32-byte header: the 12,288 class;
// while the largest class was 8,192 they came from glibc's malloc, from free chunks on pages of the
// zygote's heap: copy-on-write faults in every call's `compile`).
constexpr std::size_t kLargeClasses[] = {640,  768,  1024, 1536,  2048, 3072,
                                         4096, 6144, 8192, 12288, 16384};
constexpr std::size_t kSmallClasses = 32;  // 16, 32, ..., 512
constexpr std::size_t kAlignment = 16;

// Each pool starts with its header; the blocks follow at a 16-byte boundary.
struct PoolHeader {
  std::uint32_t block_bytes;
  std::uint32_t class_index;
  std::uint64_t unused;
};
static_assert(sizeof(PoolHeader) == kAlignment);

PoolHeader* header_of(const void* block, std::size_t pool_bytes) {
  auto address = reinterpret_cast<std::uintptr_t>(block);
  return reinterpret_cast<PoolHeader*>(address & ~(std::uintptr_t{pool_bytes} - 1));
}

// One chunk of kChunkBytes aligned to kChunkBytes (so a pool is found from a block by masking).
char* map_chunk() {
  const std::size_t span = 2 * FreshHeap::kChunkBytes;
  void* mapped = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) return nullptr;
  auto start = reinterpret_cast<std::uintptr_t>(mapped);
  auto aligned =
      (start + FreshHeap::kChunkBytes - 1) & ~(std::uintptr_t{FreshHeap::kChunkBytes} - 1);
  if (aligned > start) ::munmap(mapped, aligned - start);
  const std::uintptr_t tail = aligned + FreshHeap::kChunkBytes;
  if (start + span > tail) ::munmap(reinterpret_cast<void*>(tail), start + span - tail);
  return reinterpret_cast<char*>(aligned);
}

}  // namespace

std::size_t FreshHeap::class_of(std::size_t bytes) {
  if (bytes <= kSmallClasses * kAlignment) return bytes == 0 ? 0 : (bytes - 1) / kAlignment;
  std::size_t index = kSmallClasses;
  for (std::size_t size : kLargeClasses) {
    if (bytes <= size) return index;
    ++index;
  }
  return kClasses;  // too large
}

std::size_t FreshHeap::class_bytes(std::size_t index) {
  return index < kSmallClasses ? (index + 1) * kAlignment : kLargeClasses[index - kSmallClasses];
}

char* FreshHeap::take_pool(bool small) {
  PoolSource& source = small ? small_pools_ : pools_;
  if (source.next == source.end) {
    if (chunk_count_ == kMaxChunks) return nullptr;
    char* chunk = map_chunk();
    if (chunk == nullptr) return nullptr;
    chunk_small_[chunk_count_] = small;
    chunk_bases_[chunk_count_++] = reinterpret_cast<std::uintptr_t>(chunk);
    source.next = chunk;
    source.end = chunk + kChunkBytes;
  }
  char* pool = source.next;
  source.next += small ? kSmallPoolBytes : kPoolBytes;
  return pool;
}

std::size_t FreshHeap::pool_bytes_of(const void* block) const {
  const auto base = reinterpret_cast<std::uintptr_t>(block) & ~(std::uintptr_t{kChunkBytes} - 1);
  for (std::size_t i = 0; i < chunk_count_; ++i) {
    if (chunk_bases_[i] == base) return chunk_small_[i] ? kSmallPoolBytes : kPoolBytes;
  }
  return kPoolBytes;  // not reached for owned blocks
}

void* FreshHeap::allocate(std::size_t bytes) {
  const std::size_t index = class_of(bytes);
  if (index >= kClasses) return nullptr;
  ClassState& state = classes_[index];
  if (state.free != nullptr) {
    void* block = state.free;
    state.free = *static_cast<void**>(block);
    return block;
  }
  const std::size_t size = class_bytes(index);
  if (state.next == nullptr || static_cast<std::size_t>(state.end - state.next) < size) {
    const bool small = small_class(index);
    char* pool = take_pool(small);
    if (pool == nullptr) return nullptr;
    auto* header = reinterpret_cast<PoolHeader*>(pool);
    header->block_bytes = static_cast<std::uint32_t>(size);
    header->class_index = static_cast<std::uint32_t>(index);
    state.next = pool + sizeof(PoolHeader);
    state.end = pool + (small ? kSmallPoolBytes : kPoolBytes);
  }
  void* block = state.next;
  state.next += size;
  return block;
}

bool FreshHeap::owns(const void* block) const {
  const auto base = reinterpret_cast<std::uintptr_t>(block) & ~(std::uintptr_t{kChunkBytes} - 1);
  for (std::size_t i = 0; i < chunk_count_; ++i) {
    if (chunk_bases_[i] == base) return true;
  }
  return false;
}

std::size_t FreshHeap::capacity(const void* block) const {
  return header_of(block, pool_bytes_of(block))->block_bytes;
}

void FreshHeap::release(void* block) {
  ClassState& state = classes_[header_of(block, pool_bytes_of(block))->class_index];
  *static_cast<void**>(block) = state.free;
  state.free = block;
}

}  // namespace wf::evaluator::python_internal
