#include "evaluator/sandbox/file_image.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "wf/sanitizer.h"

namespace wf::evaluator::sandbox_internal {
namespace {

// Between copying a region into the file and mapping the file over it, nothing may write to that
// region: so from the first copy to the last mapping this file uses the stack and system calls
// only (no malloc, no stdio). The thread's own TLS and control block stay where they are.

constexpr std::size_t kMaxRegions = 512;
constexpr std::uintptr_t kLargestRegion = std::uintptr_t{1} << 30;
// glibc serves requests at or above its mmap threshold (128 KiB at first, it only grows) from a
// mapping of their own; smaller chunks live in the heap.
constexpr std::uintptr_t kSmallestMmappedChunk = 128u << 10;
constexpr std::uintptr_t kIsMmapped = 0x2;
constexpr std::uintptr_t kSizeFlags = 0x7;

struct Region {
  std::uintptr_t start = 0;
  std::uintptr_t end = 0;
  int prot = 0;
  off_t offset = 0;  // in the file
};

struct Regions {
  Region items[kMaxRegions];
  std::size_t count = 0;
  bool overflow = false;

  void add(std::uintptr_t start, std::uintptr_t end, int prot) {
    if (start >= end) return;
    if (count == kMaxRegions) {
      overflow = true;  // the rest stays anonymous: slower children, nothing wrong
      return;
    }
    items[count++] = Region{start, end, prot, 0};
  }
};

// Reads /proc/self/smaps one line at a time into a buffer on the stack.
class MapsReader {
 public:
  explicit MapsReader(const char* path) : fd_(::open(path, O_RDONLY | O_CLOEXEC)) {}
  ~MapsReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  MapsReader(const MapsReader&) = delete;
  MapsReader& operator=(const MapsReader&) = delete;

  bool opened() const { return fd_ >= 0; }
  bool failed() const { return failed_; }

  // The next line without its '\n' (NUL-terminated in place), or nullptr at the end.
  char* next() {
    for (;;) {
      if (char* newline = static_cast<char*>(std::memchr(buffer_ + begin_, '\n', end_ - begin_))) {
        char* line = buffer_ + begin_;
        *newline = '\0';
        begin_ = static_cast<std::size_t>(newline - buffer_) + 1;
        return line;
      }
      if (begin_ > 0) {
        std::memmove(buffer_, buffer_ + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (end_ == sizeof(buffer_) - 1) {  // a line longer than the buffer: cannot happen
        failed_ = true;
        return nullptr;
      }
      const ssize_t n = ::read(fd_, buffer_ + end_, sizeof(buffer_) - 1 - end_);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) failed_ = true;
      if (n <= 0) return nullptr;
      end_ += static_cast<std::size_t>(n);
    }
  }

 private:
  int fd_;
  bool failed_ = false;
  char buffer_[8192];
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

std::uintptr_t parse_hex(const char*& p) {
  std::uintptr_t value = 0;
  for (;; ++p) {
    const char c = *p;
    if (c >= '0' && c <= '9') {
      value = value * 16 + static_cast<std::uintptr_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      value = value * 16 + static_cast<std::uintptr_t>(c - 'a' + 10);
    } else {
      return value;
    }
  }
}

const char* skip_field(const char* p) {
  while (*p != '\0' && *p != ' ') ++p;
  while (*p == ' ') ++p;
  return p;
}

// Whether the page at `page` starts a chunk that glibc's malloc mmapped for itself: its header is
// prev_size 0 and a page-multiple size with IS_MMAPPED set, fitting before `end`. (A false match
// only leaves memory anonymous.) Chunks that memalign placed inside their mapping do not start a
// page; nothing in the runtimes allocates those.
std::uintptr_t mmapped_chunk_at(std::uintptr_t page, std::uintptr_t end, std::uintptr_t page_size) {
  const auto* header = reinterpret_cast<const std::uintptr_t*>(page);
  if (header[0] != 0 || (header[1] & kIsMmapped) == 0) return 0;
  const std::uintptr_t size = header[1] & ~kSizeFlags;
  if (size < kSmallestMmappedChunk || size % page_size != 0 || size > end - page) return 0;
  return size;
}

// An anonymous region without the mmapped malloc chunks in it (mremap would grow a file mapping
// over the wrong file offsets).
void add_anonymous(Regions& regions, std::uintptr_t start, std::uintptr_t end, int prot,
                   std::uintptr_t page_size) {
  std::uintptr_t run = start;
  for (std::uintptr_t page = start; page < end;) {
    if (const std::uintptr_t chunk = mmapped_chunk_at(page, end, page_size)) {
      regions.add(run, page, prot);
      page += chunk;
      run = page;
    } else {
      page += page_size;
    }
  }
  regions.add(run, end, prot);
}

// One mapping of /proc/self/smaps: its header line "start-end perms offset dev inode   path",
// then lines of figures about it, "Anonymous: N kB" among them.
struct Mapping {
  std::uintptr_t start = 0;
  std::uintptr_t end = 0;
  char perms[4] = {};
  char path[256] = {};  // "" for anonymous memory; long paths are cut (only the start is read)
};

// Parses a header line into `mapping`; false for the figures' lines ("Rss:  4 kB"), whose first
// word is not an address range.
bool parse_header(const char* line, Mapping& mapping) {
  const char* p = line;
  const std::uintptr_t start = parse_hex(p);
  if (*p++ != '-') return false;
  const std::uintptr_t end = parse_hex(p);
  if (*p++ != ' ') return false;
  for (int i = 0; i < 4; ++i) {
    if (p[i] == '\0') return false;
  }
  mapping.start = start;
  mapping.end = end;
  for (int i = 0; i < 4; ++i) mapping.perms[i] = p[i];
  p = skip_field(p);  // perms
  p = skip_field(p);  // offset
  p = skip_field(p);  // device
  p = skip_field(p);  // inode
  std::size_t n = 0;
  while (p[n] != '\0' && n + 1 < sizeof(mapping.path)) {
    mapping.path[n] = p[n];
    ++n;
  }
  mapping.path[n] = '\0';
  return true;
}

// Whether `mapping`, which holds `anonymous_kb` of anonymous pages, goes into the image. `thread`
// is the calling thread's control block: its region stays anonymous, since the kernel writes to
// it at any time (the rseq area's cpu_id), and so does glibc (errno) in the middle of the copy.
void consider(Regions& regions, const Mapping& mapping, unsigned long anonymous_kb,
              std::uintptr_t page_size, std::uintptr_t thread) {
  const std::uintptr_t start = mapping.start;
  const std::uintptr_t end = mapping.end;
  const char* perms = mapping.perms;
  const char* path = mapping.path;
  if (perms[0] != 'r' || perms[3] != 'p') return;  // private, readable
  if (end <= start || end - start > kLargestRegion) return;
  if (start <= thread && thread < end) return;
  const int exec = perms[2] == 'x' ? PROT_EXEC : 0;
  if (perms[1] != 'w') {
    // Read-only data of the program and its libraries that the dynamic linker relocated and then
    // made read-only (RELRO): anonymous pages, which every fork copied whether a call read them
    // or not (SpiderMonkey's and libcrypto's, 392 kB each, in the Python zygote). Pure file
    // mappings (text, constants) have no anonymous page and stay as they are.
    if (*path == '/' && anonymous_kb > 0) regions.add(start, end, PROT_READ | exec);
    return;
  }
  const int prot = PROT_READ | PROT_WRITE | exec;
  if (*path == '\0') return add_anonymous(regions, start, end, prot, page_size);
  // The brk heap holds no mmapped chunks. Files: the data segments of the program and its
  // libraries. Not [stack], [vvar], [vdso], [vsyscall] or named anonymous memory.
  if (std::strcmp(path, "[heap]") == 0 || *path == '/') regions.add(start, end, prot);
}

bool all_zero(const char* page, std::size_t page_size) {
  const auto* words = reinterpret_cast<const std::uint64_t*>(page);
  std::uint64_t any = 0;
  for (std::size_t i = 0; i < page_size / sizeof(std::uint64_t); ++i) any |= words[i];
  return any == 0;
}

bool write_all_at(int fd, const char* data, std::size_t size, off_t at) {
  while (size > 0) {
    const ssize_t n = ::pwrite(fd, data, size, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    at += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Copies the region's pages into the file at its offset, leaving pages of zeros as holes (read
// back as zeros). Returns the bytes written, or -1.
long long copy_region(int fd, const Region& region, std::uintptr_t page_size) {
  long long written = 0;
  std::uintptr_t run = 0;  // start of the current run of non-zero pages, 0 when none
  for (std::uintptr_t page = region.start; page <= region.end; page += page_size) {
    const bool zero =
        page == region.end || all_zero(reinterpret_cast<const char*>(page), page_size);
    if (!zero && run == 0) run = page;
    if (zero && run != 0) {
      const std::size_t size = page - run;
      if (!write_all_at(fd, reinterpret_cast<const char*>(run), size,
                        region.offset + static_cast<off_t>(run - region.start))) {
        return -1;
      }
      written += static_cast<long long>(size);
      run = 0;
    }
  }
  return written;
}

std::string describe(const char* step, int error) {
  return std::string(step) + ": " + std::strerror(error);
}

}  // namespace

bool rebase_onto_file_image(FileImage& image, std::string& error, bool keep_fd) {
  image = FileImage{};
  if (WF_ASAN || WF_TSAN) return true;  // their shadow memory is theirs to manage
  const auto page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  Regions regions;
  {
    MapsReader smaps("/proc/self/smaps");
    if (!smaps.opened()) {
      error = describe("open /proc/self/smaps", errno);
      return false;
    }
    const auto thread = reinterpret_cast<std::uintptr_t>(::pthread_self());
    Mapping mapping;
    bool pending = false;  // `mapping` awaits its "Anonymous:" line
    while (const char* line = smaps.next()) {
      if (pending && std::strncmp(line, "Anonymous:", 10) == 0) {
        consider(regions, mapping, std::strtoul(line + 10, nullptr, 10), page_size, thread);
        pending = false;
      } else if (parse_header(line, mapping)) {
        pending = true;
      }
    }
    if (smaps.failed()) {
      error = "cannot read /proc/self/smaps";
      return false;
    }
  }
  if (regions.count == 0) return true;
  off_t total = 0;
  for (std::size_t i = 0; i < regions.count; ++i) {
    regions.items[i].offset = total;
    total += static_cast<off_t>(regions.items[i].end - regions.items[i].start);
  }

  const int fd = ::memfd_create("wf-zygote-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    error = describe("memfd_create", errno);
    return false;
  }
  const char* failed_step = nullptr;
  int failed_errno = 0;
  long long stored = 0;
  if (::ftruncate(fd, total) != 0) {
    failed_step = "ftruncate";
    failed_errno = errno;
  }
  for (std::size_t i = 0; failed_step == nullptr && i < regions.count; ++i) {
    const long long written = copy_region(fd, regions.items[i], page_size);
    if (written < 0) {
      failed_step = "write to the memfd";
      failed_errno = errno;
    }
    stored += written;
  }
  if (failed_step == nullptr &&
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    failed_step = "seal the memfd";
    failed_errno = errno;
  }
  if (failed_step != nullptr) {
    ::close(fd);
    error = describe(failed_step, failed_errno);
    return false;
  }
  // The point of no return: each region is replaced by the file's copy of itself.
  std::size_t mapped = 0;
  std::size_t bytes = 0;
  for (; mapped < regions.count; ++mapped) {
    const Region& region = regions.items[mapped];
    const std::size_t length = region.end - region.start;
    void* at = ::mmap(reinterpret_cast<void*>(region.start), length, region.prot,
                      MAP_PRIVATE | MAP_FIXED, fd, region.offset);
    if (at == MAP_FAILED) {
      failed_errno = errno;
      break;
    }
    bytes += length;
  }
  if (mapped < regions.count) {
    ::close(fd);
    image.broken = true;
    error = describe("mmap of the memory image over its region (memory of this process is lost)",
                     failed_errno);
    return false;
  }
  image.regions = regions.count;
  image.bytes = bytes;
  image.stored_bytes = static_cast<std::size_t>(stored);
  if (keep_fd) {
    image.fd = fd;
  } else {
    ::close(fd);
  }
  return true;
}

}  // namespace wf::evaluator::sandbox_internal
