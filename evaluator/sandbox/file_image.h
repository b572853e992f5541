#pragma once
// The supervisor's private writable memory moved into a sealed file (private to evaluator/sandbox).
//
// After a language runtime is initialised and warmed, its heap, its arenas and the data segments
// of the program and its libraries are anonymous memory: every fork copies a page-table entry per
// resident page of it (write-protecting each for copy-on-write), and every child's exit tears
// them down again. Python's was ~8 MB, so ~2,000 entries per call, whether the call reads a page
// or not. rebase_onto_file_image copies that memory into one memfd, seals it, and maps it back
// MAP_PRIVATE at the same addresses with the same protections. From then on the pages are
// file-backed: fork copies no page tables for a mapping that holds no anonymous page, a child maps
// only the pages it touches (read faults are served from the page cache, several at a time), and
// a write still gives the writer its own copy, as before. Nothing is shared that was not already
// shared: the file is sealed (no process can write, grow or shrink it), and its pages are exactly
// the contents every child already inherited through fork.
//
// The same for the libraries' relocated read-only data (RELRO: the dynamic linker wrote it, then
// made it read-only), which is anonymous memory too: in the Python zygote SpiderMonkey's and
// libcrypto's (392 kB each), copied by every fork though no Python call reads them.
//
// Left anonymous: the stack (in use while this runs), kernel-provided mappings ([vdso], ...),
// other regions that are not both readable and writable, very large regions (sanitizer shadows,
// reservations) and glibc's own mmapped malloc chunks: realloc grows those with mremap, which on
// a file mapping would extend it over other offsets of the file (or past its end: SIGBUS).
// Not for processes with more than one thread (another thread could write to memory between the
// copy and the new mapping), nor under AddressSanitizer or ThreadSanitizer (does nothing there).

#include <cstddef>
#include <string>

namespace wf::evaluator::sandbox_internal {

struct FileImage {
  std::size_t regions = 0;       // mappings now backed by the file
  std::size_t bytes = 0;         // their total size
  std::size_t stored_bytes = 0;  // bytes written to the file (pages of zeros are left as holes)
  int fd = -1;                   // the sealed memfd, when asked to keep it (else closed)
  bool broken = false;  // an mmap over a region failed: that memory is gone, the process must end
};

// Rebases this process's private writable memory onto a sealed memfd (see above). Single-threaded
// callers only. False with `error` set when it could not: then no mapping was changed, unless
// image.broken (an mmap over an existing region failed; the process should not go on).
bool rebase_onto_file_image(FileImage& image, std::string& error, bool keep_fd = false);

}  // namespace wf::evaluator::sandbox_internal
