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
  for (std::size_t size : {0u, 1u, 15u, 16u, 17u, 100u, 512u, 513u, 700u, 1000u, 4096u, 8192u}) {
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
