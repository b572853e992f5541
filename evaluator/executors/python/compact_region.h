#pragma once
// One contiguous region for the Python driver's objects in the zygote (private to
// wf_python_runtime).
//
// Every sandbox child runs the driver (python_driver.py): each object a call reads from the
// interpreter's stack (the driver's functions and their code objects, constants, classes, the
// json scanner) gets its reference count written, and each first write to a page the child shares
// with the zygote is a copy-on-write fault (~4.5 us here). Made by CPython's allocators, those
// objects lie in the free blocks of pymalloc pools and malloc chunks left by the modules imported
// before them, one or two per page among cold objects. Made while a CompactRegion serves every
// allocation (the driver's code is unmarshalled and executed inside one), they lie one after the
// other, and a call writes fewer pages for them: 9 fewer copy-on-write faults per call
// (bench/README.md, "The driver's objects in one region").
//
// A bump allocator over one reservation: blocks are 16-byte aligned, each after a 16-byte header
// that holds its size; a released block is not reused (the region holds objects that live as
// long as the process: what the driver frees while loading stays a hole). Past its end the
// caller uses CPython's allocator. Single-threaded, like the zygote.

#include <cstddef>
#include <cstdint>

namespace wf::evaluator::python_internal {

class CompactRegion {
 public:
  static constexpr std::size_t kAlignment = 16;

  CompactRegion() = default;
  CompactRegion(const CompactRegion&) = delete;
  CompactRegion& operator=(const CompactRegion&) = delete;
  ~CompactRegion();

  // Maps `bytes` of address space (rounded up to pages; pages are taken as they are first
  // written). False when the mapping failed or the region is already mapped.
  bool reserve(std::size_t bytes);
  // A block of at least `bytes` (distinct even for 0), or nullptr when the region is not mapped
  // or full.
  void* allocate(std::size_t bytes);
  // Whether `block` (non-null) came from allocate().
  bool owns(const void* block) const {
    const auto address = reinterpret_cast<std::uintptr_t>(block);
    return address >= base_ && address < end_;
  }
  // The size asked for an owned block (what realloc may copy).
  std::size_t size_of(const void* block) const;
  // Bytes handed out so far, headers included.
  std::size_t used() const { return next_ - base_; }

 private:
  std::uintptr_t base_ = 0;
  std::uintptr_t next_ = 0;
  std::uintptr_t end_ = 0;
};

}  // namespace wf::evaluator::python_internal
