#include "evaluator/executors/python/compact_region.h"

#include <sys/mman.h>
#include <unistd.h>

namespace wf::evaluator::python_internal {

CompactRegion::~CompactRegion() {
  if (base_ != 0) ::munmap(reinterpret_cast<void*>(base_), end_ - base_);
}

bool CompactRegion::reserve(std::size_t bytes) {
  if (base_ != 0 || bytes == 0) return false;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t length = (bytes + page - 1) / page * page;
  void* mapped = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapped == MAP_FAILED) return false;
  base_ = next_ = reinterpret_cast<std::uintptr_t>(mapped);
  end_ = base_ + length;
  return true;
}

void* CompactRegion::allocate(std::size_t bytes) {
  if (base_ == 0) return nullptr;
  // A block of 0 bytes still takes 16, so that it is distinct from the next block's header.
  const std::size_t wanted = bytes == 0 ? 1 : bytes;
  const std::size_t rounded = (wanted + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded < wanted || rounded > end_ - next_ || end_ - next_ - rounded < kAlignment) {
    return nullptr;
  }
  auto* header = reinterpret_cast<std::size_t*>(next_);
  *header = bytes;
  void* block = reinterpret_cast<void*>(next_ + kAlignment);
  next_ += kAlignment + rounded;
  return block;
}

std::size_t CompactRegion::size_of(const void* block) const {
  return *reinterpret_cast<const std::size_t*>(reinterpret_cast<std::uintptr_t>(block) -
                                               kAlignment);
}

}  // namespace wf::evaluator::python_internal
