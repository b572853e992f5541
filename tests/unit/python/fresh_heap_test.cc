// FreshHeap in-process: size classes, alignment, reuse, ownership and the cap.

#include "evaluator/executors/python/fresh_heap.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

namespace wf::evaluator::python_internal {
namespace {

TEST(FreshHeap, BlocksAreAlignedDistinctAndLargeEnough) {
  auto heap = std::make_unique<FreshHeap>();
  std::set<std::uintptr_t> seen;
  // 8,224: one block of CPython's parser arena (8 KiB and its header), which `compile` of every
  // call's code allocates.
  for (std::size_t size :
       {0u, 1u, 15u, 16u, 17u, 100u, 512u, 513u, 700u, 1000u, 4096u, 8192u, 8224u, 16384u}) {
    for (int i = 0; i < 50; ++i) {
      void* block = heap->allocate(size);
      ASSERT_NE(block, nullptr) << size;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(block) % 16, 0u) << size;
      EXPECT_TRUE(heap->owns(block));
      EXPECT_GE(heap->capacity(block), std::max<std::size_t>(size, 1)) << size;
      EXPECT_LE(heap->capacity(block), std::max<std::size_t>(size, 16) * 2) << size;
      std::memset(block, 0xab, heap->capacity(block));
      EXPECT_TRUE(seen.insert(reinterpret_cast<std::uintptr_t>(block)).second) << size;
    }
  }
}

// A short call takes a few blocks of many classes: the small classes' pools share pages, so
// that it touches a few fresh pages rather than one per class (each a page fault in the child).
TEST(FreshHeap, SmallClassesShareTheirPages) {
  auto heap = std::make_unique<FreshHeap>();
  std::set<std::uintptr_t> pages;
  std::size_t bytes = 0;
  for (std::size_t size = 16; size <= FreshHeap::kSmallPoolLimit; size += 16) {
    for (int i = 0; i < 2; ++i) {
      void* block = heap->allocate(size);
      ASSERT_NE(block, nullptr) << size;
      std::memset(block, 0x5a, heap->capacity(block));
      pages.insert(reinterpret_cast<std::uintptr_t>(block) / 4096);
      bytes += size;
    }
  }
  // 16 classes, two blocks each (4.3 KiB): one 1 KiB pool per class, 16 KiB in all.
  EXPECT_LE(pages.size(), 16 * FreshHeap::kSmallPoolBytes / 4096) << bytes;
  EXPECT_EQ(heap->chunks(), 1u);
  // A larger class has pools of its own, in another chunk.
  void* large = heap->allocate(FreshHeap::kSmallPoolLimit + 1);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(pages.count(reinterpret_cast<std::uintptr_t>(large) / 4096), 0u);
  EXPECT_EQ(heap->chunks(), 2u);
}

// A small class that outgrows its pool takes the next 1 KiB pool; released blocks of every pool
// go back to their own class, and their capacity stays their class's.
TEST(FreshHeap, SmallClassesGrowPoolByPool) {
  auto heap = std::make_unique<FreshHeap>();
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) blocks.push_back(heap->allocate(96));
  std::set<std::uintptr_t> seen;
  for (void* block : blocks) {
    ASSERT_NE(block, nullptr);
    EXPECT_EQ(heap->capacity(block), 96u);
    EXPECT_TRUE(seen.insert(reinterpret_cast<std::uintptr_t>(block)).second);
  }
  // (1024 - 16) / 96 = 10 blocks per pool: 20 pools, 5 pages.
  const auto first = reinterpret_cast<std::uintptr_t>(blocks.front());
  const auto last = reinterpret_cast<std::uintptr_t>(blocks.back());
  EXPECT_LT(last - first, 20 * FreshHeap::kSmallPoolBytes);
  for (void* block : blocks) heap->release(block);
  EXPECT_EQ(heap->allocate(81), blocks.back());  // 96-byte class, last released first
  EXPECT_NE(heap->allocate(112), blocks[198]);
}

TEST(FreshHeap, ReleasedBlocksAreReusedByTheirClassOnly) {
  auto heap = std::make_unique<FreshHeap>();
  void* small = heap->allocate(40);
  void* large = heap->allocate(3000);
  heap->release(small);
  heap->release(large);
  EXPECT_NE(heap->allocate(200), small);  // another class: a new block
  EXPECT_EQ(heap->allocate(33), small);   // same class (48 bytes)
  EXPECT_EQ(heap->allocate(2049), large);
}

TEST(FreshHeap, ServesNothingLargerThanItsLargestClass) {
  auto heap = std::make_unique<FreshHeap>();
  EXPECT_EQ(heap->allocate(FreshHeap::kLargestBlock + 1), nullptr);
  EXPECT_EQ(heap->allocate(std::size_t{1} << 30), nullptr);
  EXPECT_EQ(heap->chunks(), 0u);
}

TEST(FreshHeap, OwnsOnlyItsOwnBlocks) {
  auto heap = std::make_unique<FreshHeap>();
  void* mine = heap->allocate(64);
  void* theirs = std::malloc(64);
  int on_stack = 0;
  EXPECT_TRUE(heap->owns(mine));
  EXPECT_FALSE(heap->owns(theirs));
  EXPECT_FALSE(heap->owns(&on_stack));
  EXPECT_FALSE(heap->owns(heap.get()));
  std::free(theirs);
}

TEST(FreshHeap, StopsAtItsCap) {
  auto heap = std::make_unique<FreshHeap>();
  std::size_t served = 0;
  const std::size_t bound = FreshHeap::kMaxChunks * FreshHeap::kChunkBytes / 8192 + 1;
  while (served < bound && heap->allocate(8192) != nullptr) ++served;
  EXPECT_EQ(heap->chunks(), FreshHeap::kMaxChunks);
  EXPECT_LT(served, bound);
  EXPECT_GT(served, bound * 3 / 4);
  // Full pools of other classes cannot be had either; freed blocks still can.
  EXPECT_EQ(heap->allocate(16), nullptr);
}

}  // namespace
}  // namespace wf::evaluator::python_internal
