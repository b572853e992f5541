// CompactRegion in-process: blocks one after the other, alignment, sizes, ownership, the end.

#include "evaluator/executors/python/compact_region.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

namespace wf::evaluator::python_internal {
namespace {

std::uintptr_t address(const void* block) {
  return reinterpret_cast<std::uintptr_t>(block);
}

TEST(CompactRegion, ServesNothingBeforeItIsReserved) {
  CompactRegion region;
  EXPECT_EQ(region.allocate(16), nullptr);
  int on_the_stack = 0;
  EXPECT_FALSE(region.owns(&on_the_stack));
  EXPECT_EQ(region.used(), 0u);
}

TEST(CompactRegion, BlocksFollowOneAnotherAlignedAndSized) {
  CompactRegion region;
  ASSERT_TRUE(region.reserve(1 << 16));
  EXPECT_FALSE(region.reserve(1 << 16));  // once
  void* previous = nullptr;
  std::size_t previous_size = 0;
  for (std::size_t size : {1u, 0u, 15u, 16u, 17u, 100u, 600u, 4096u, 5000u}) {
    void* block = region.allocate(size);
    ASSERT_NE(block, nullptr) << size;
    EXPECT_EQ(address(block) % CompactRegion::kAlignment, 0u) << size;
    EXPECT_TRUE(region.owns(block));
    EXPECT_EQ(region.size_of(block), size);
    std::memset(block, 0xab, size);
    if (previous != nullptr) {
      // Right after the previous block: its size rounded up to 16 (0 takes 16 too), then this
      // block's header.
      const std::size_t rounded = previous_size == 0 ? 16 : (previous_size + 15) / 16 * 16;
      EXPECT_EQ(address(block), address(previous) + rounded + CompactRegion::kAlignment) << size;
      EXPECT_EQ(region.size_of(previous), previous_size) << "a later block overwrote a header";
    }
    previous = block;
    previous_size = size;
  }
  int on_the_stack = 0;
  EXPECT_FALSE(region.owns(&on_the_stack));
}

TEST(CompactRegion, ReturnsNullWhenFullAndForImpossibleSizes) {
  CompactRegion region;
  ASSERT_TRUE(region.reserve(4096));  // one page: header + 4,080 bytes at most
  EXPECT_EQ(region.allocate(4096), nullptr);
  EXPECT_EQ(region.allocate(SIZE_MAX), nullptr);
  EXPECT_EQ(region.allocate(SIZE_MAX - 8), nullptr);
  void* block = region.allocate(4096 - 2 * CompactRegion::kAlignment);
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(region.used(), 4096u - CompactRegion::kAlignment);
  EXPECT_EQ(region.allocate(1), nullptr);  // 16 bytes left: no room for a header and a block
  EXPECT_EQ(region.used(), 4096u - CompactRegion::kAlignment);
}

}  // namespace
}  // namespace wf::evaluator::python_internal
