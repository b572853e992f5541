// Allocation-heavy Python in a sandbox child, whose small objects come from the child's own
// FreshHeap (evaluator/executors/python/fresh_heap.h): results stay exact through growth
// (realloc), reuse of freed blocks, blocks of the zygote freed in the child, and past the heap's
// cap, where CPython's allocator takes over.

#include <cstdint>
#include <string>

#include "hostile_python_fixture.h"

namespace wf::evaluator::hostile {
namespace {

TEST_F(HostilePython, ChildObjectsComeFromTheFreshHeap) {
  // sys.getallocatedblocks() counts the blocks of CPython's own small-object allocator: in a child,
  // new objects are not among them.
  CallOutcome out =
      run("import sys\n"
          "def Z1():\n"
          "  before = sys.getallocatedblocks()\n"
          "  keep = [object() for _ in range(10000)]\n"
          "  return str(sys.getallocatedblocks() - before)");
  ASSERT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_LT(std::stol(z22_string(out.output.z22_json)), 1000) << out.output.z22_json;
}

TEST_F(HostilePython, AllocationHeavyCodeComputesExactly) {
  CallOutcome out = run(
      "def Z1():\n"
      "  d = {str(i): [i] * (i % 7) for i in range(100000)}\n"
      "  total = sum(sum(v) for v in d.values())\n"
      "  b = bytearray()\n"
      "  for i in range(5000):\n"
      "    b += bytes([i % 256]) * (i % 13)\n"
      "  parts = []\n"
      "  for i in range(20000):\n"
      "    parts.append(chr(97 + i % 26) * (i % 50))\n"
      "  text = ''.join(parts)\n"
      "  del d\n"
      "  again = {i: str(i) * 3 for i in range(50000)}\n"
      "  return f'{total} {len(b)} {sum(b)} {len(text)} {text.count(\"z\")} {len(again[49999])}'");
  ASSERT_EQ(out.status, Status::kOk) << out.detail;
  std::uint64_t total = 0, bytes = 0, byte_sum = 0, text = 0, zs = 0;
  for (std::uint64_t i = 0; i < 100000; ++i) total += i * (i % 7);
  for (std::uint64_t i = 0; i < 5000; ++i) {
    bytes += i % 13;
    byte_sum += (i % 256) * (i % 13);
  }
  for (std::uint64_t i = 0; i < 20000; ++i) {
    text += i % 50;
    if (i % 26 == 25) zs += i % 50;
  }
  EXPECT_EQ(z22_string(out.output.z22_json),
            std::to_string(total) + " " + std::to_string(bytes) + " " + std::to_string(byte_sum) +
                " " + std::to_string(text) + " " + std::to_string(zs) + " 15");
}

TEST_F(HostilePython, SmallObjectsBeyondTheFreshHeapStillWork) {
  // ~24 MiB of small objects: more than the fresh heap's 16 MiB, then freed and made again.
  CallOutcome out =
      run("def Z1():\n"
          "  keep = [(i, str(i)) for i in range(150000)]\n"
          "  first = sum(len(s) for _, s in keep)\n"
          "  keep = keep[::2]\n"
          "  keep += [(i, 'x' * (i % 40)) for i in range(100000)]\n"
          "  return f'{first} {len(keep)} {sum(len(s) for _, s in keep)}'");
  ASSERT_EQ(out.status, Status::kOk) << out.detail;
  std::uint64_t first = 0, evens = 0, xs = 0;
  for (std::uint64_t i = 0; i < 150000; ++i) {
    const std::uint64_t digits = std::to_string(i).size();
    first += digits;
    if (i % 2 == 0) evens += digits;
  }
  for (std::uint64_t i = 0; i < 100000; ++i) xs += i % 40;
  EXPECT_EQ(z22_string(out.output.z22_json),
            std::to_string(first) + " 175000 " + std::to_string(evens + xs));
}

}  // namespace
}  // namespace wf::evaluator::hostile
