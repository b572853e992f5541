// rebase_onto_file_image (evaluator/sandbox/file_image.h) in a forked copy of the test process:
// the copy moves its private memory into the sealed file, checks what it can see, and reports
// failures through a pipe (the test process's own memory is never rebased).

#include "evaluator/sandbox/file_image.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "wf/sanitizer.h"

namespace wf::evaluator::sandbox_internal {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kMapsBytes = 1 << 20;

// Written before the rebase, read after: in the program's data segment and bss.
std::uint64_t g_data[1024] = {1, 2, 3};
std::uint64_t g_bss[4096];
char g_maps_before[kMapsBytes];
char g_maps_after[kMapsBytes];

std::uint64_t pattern(std::size_t i) {
  return 0x9e3779b97f4a7c15ull * (i + 1);
}

// The whole of a /proc file into `buffer` (no allocation: the heap must not move between two
// readings of the maps).
std::size_t read_proc(const char* path, char* buffer, std::size_t size) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t used = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buffer + used, size - 1 - used);
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buffer[used] = '\0';
  return used;
}

// The address ranges and permissions of `maps`, adjacent lines of equal permissions merged (a
// rebase may merge neighbouring mappings into one), without the stack (it grows) and the mappings
// the kernel provides; one "start-end perms" line each.
std::string coverage(const char* maps) {
  std::string out;
  unsigned long last_end = 0;
  char last_perms[5] = "";
  std::string pending;
  const char* line = maps;
  while (*line != '\0') {
    const char* newline = std::strchr(line, '\n');
    std::string text(line, newline != nullptr ? newline : line + std::strlen(line));
    line = newline != nullptr ? newline + 1 : line + text.size();
    unsigned long start = 0, end = 0;
    char perms[5] = "";
    if (std::sscanf(text.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3) continue;
    if (text.find('[') != std::string::npos && text.find("[heap]") == std::string::npos) continue;
    if (start == last_end && std::strcmp(perms, last_perms) == 0) {
      last_end = end;
      continue;
    }
    if (!pending.empty()) out += pending + std::to_string(last_end) + "\n";
    pending = std::to_string(start) + "-" + perms + "-";
    last_end = end;
    std::memcpy(last_perms, perms, sizeof(perms));
  }
  if (!pending.empty()) out += pending + std::to_string(last_end) + "\n";
  return out;
}

// "Anonymous:" of /proc/self/smaps_rollup, in kB.
long anonymous_kb() {
  static char buffer[4096];
  read_proc("/proc/self/smaps_rollup", buffer, sizeof(buffer));
  const char* found = std::strstr(buffer, "\nAnonymous:");
  return found != nullptr ? std::strtol(found + 11, nullptr, 10) : -1;
}

// "Anonymous:" of the mapping that holds `address`, in kB (from /proc/self/smaps).
long anonymous_kb_at(const void* address) {
  static char smaps[4 << 20];
  read_proc("/proc/self/smaps", smaps, sizeof(smaps));
  const auto target = reinterpret_cast<unsigned long>(address);
  for (const char* line = smaps; line != nullptr && *line != '\0';) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(line, "%lx-%lx ", &start, &end) == 2 && start <= target && target < end) {
      const char* found = std::strstr(line, "\nAnonymous:");
      return found != nullptr ? std::strtol(found + 11, nullptr, 10) : -1;
    }
    line = std::strchr(line, '\n');
    if (line != nullptr) ++line;
  }
  return -1;
}

// Whether /proc/self/maps names the image for the mapping that holds `address`.
bool backed_by_image(const void* address) {
  read_proc("/proc/self/maps", g_maps_after, kMapsBytes);
  const auto target = reinterpret_cast<unsigned long>(address);
  for (const char* line = g_maps_after; *line != '\0';) {
    const char* newline = std::strchr(line, '\n');
    unsigned long start = 0, end = 0;
    if (std::sscanf(line, "%lx-%lx ", &start, &end) == 2 && start <= target && target < end) {
      const char* name = std::strstr(line, "wf-zygote-image");
      return name != nullptr && (newline == nullptr || name < newline);
    }
    if (newline == nullptr) break;
    line = newline + 1;
  }
  return false;
}

// The size field of glibc's chunk header, just before the block (IS_MMAPPED is its bit 1).
std::uintptr_t chunk_size_field(const void* block) {
  const auto header = reinterpret_cast<std::uintptr_t>(block) - sizeof(std::uintptr_t);
  return *reinterpret_cast<const std::uintptr_t*>(header);
}

// Runs `body` in a forked copy of this process; it returns "" or what went wrong. A crash of the
// copy (SIGBUS, SIGSEGV) is reported as such.
std::string in_child(const std::function<std::string()>& body) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe_fds[0]);
    const std::string failures = body();
    (void)!::write(pipe_fds[1], failures.data(), failures.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string failures;
  char chunk[4096];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], chunk, sizeof(chunk))) > 0) failures.append(chunk, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    failures += " the copy was killed by signal " + std::to_string(WTERMSIG(status));
  return failures;
}

class FileImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (WF_ASAN || WF_TSAN) GTEST_SKIP() << "rebase_onto_file_image does nothing under sanitizers";
  }
};

TEST_F(FileImageTest, KeepsEveryAddressItsProtectionAndItsContents) {
  std::string failures = in_child([]() -> std::string {
    std::string failures;
    for (std::size_t i = 0; i < std::size(g_data); ++i) g_data[i] = pattern(i);
    for (std::size_t i = 0; i < std::size(g_bss); i += 7) g_bss[i] = pattern(i);
    auto* small = static_cast<std::uint64_t*>(std::malloc(300 * sizeof(std::uint64_t)));
    for (std::size_t i = 0; i < 300; ++i) small[i] = pattern(i + 5);
    // Half written, half never touched (left as a hole in the file, read back as zeros).
    auto* mapped = static_cast<std::uint64_t*>(
        ::mmap(nullptr, 64 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (std::size_t i = 0; i < 32 * kPage / 8; ++i) mapped[i] = pattern(i);

    read_proc("/proc/self/maps", g_maps_before, kMapsBytes);
    FileImage image;
    std::string error;
    if (!rebase_onto_file_image(image, error)) return "rebase failed: " + error;
    read_proc("/proc/self/maps", g_maps_after, kMapsBytes);
    const std::string before = coverage(g_maps_before), after = coverage(g_maps_after);
    if (before != after) failures += "the address space changed:\n" + before + "-> \n" + after;
    if (image.regions == 0 || image.stored_bytes == 0 || image.stored_bytes > image.bytes) {
      failures += " image: " + std::to_string(image.regions) + " regions, " +
                  std::to_string(image.stored_bytes) + " of " + std::to_string(image.bytes);
    }
    for (std::size_t i = 0; i < std::size(g_data); ++i) {
      if (g_data[i] != pattern(i))
        return failures + " data segment changed at " + std::to_string(i);
    }
    for (std::size_t i = 0; i < std::size(g_bss); ++i) {
      if (g_bss[i] != (i % 7 == 0 ? pattern(i) : 0)) return failures + " bss changed";
    }
    for (std::size_t i = 0; i < 300; ++i) {
      if (small[i] != pattern(i + 5)) return failures + " heap block changed";
    }
    for (std::size_t i = 0; i < 64 * kPage / 8; ++i) {
      if (mapped[i] != (i < 32 * kPage / 8 ? pattern(i) : 0)) return failures + " mmap changed";
    }
    for (const void* address :
         {static_cast<const void*>(g_data), static_cast<const void*>(g_bss),
          static_cast<const void*>(small), static_cast<const void*>(mapped)}) {
      if (!backed_by_image(address)) failures += " a region is not backed by the image;";
    }
    return failures;
  });
  EXPECT_EQ(failures, "");
}

TEST_F(FileImageTest, LeavesLittleAnonymousMemory) {
  std::string failures = in_child([]() -> std::string {
    auto* mapped = static_cast<char*>(
        ::mmap(nullptr, 256 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    std::memset(mapped, 0x5a, 256 * kPage);
    const long before = anonymous_kb();
    FileImage image;
    std::string error;
    if (!rebase_onto_file_image(image, error)) return "rebase failed: " + error;
    const long after = anonymous_kb();
    const long region = anonymous_kb_at(mapped);
    std::string failures;
    if (before < 1024 || after < 0 || after > before / 4) {
      failures +=
          "anonymous memory " + std::to_string(before) + " -> " + std::to_string(after) + " kB;";
    }
    if (region != 0) failures += " the written region keeps " + std::to_string(region) + " kB;";
    for (std::size_t i = 0; i < 256 * kPage; i += 997) {
      if (mapped[i] != 0x5a) return failures + " the region's contents changed";
    }
    return failures;
  });
  EXPECT_EQ(failures, "");
}

TEST_F(FileImageTest, TheFileIsSealedAndWritesStayPrivate) {
  std::string failures = in_child([]() -> std::string {
    g_data[10] = 111;
    FileImage image;
    std::string error;
    if (!rebase_onto_file_image(image, error, /*keep_fd=*/true)) return "rebase failed: " + error;
    std::string failures;
    if (image.fd < 0) return "no descriptor kept";
    const int seals = ::fcntl(image.fd, F_GET_SEALS);
    const int expected = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
    if (seals != expected) failures += " seals " + std::to_string(seals) + ";";
    const char byte = 1;
    if (::pwrite(image.fd, &byte, 1, 0) != -1 || errno != EPERM) failures += " pwrite allowed;";
    if (::ftruncate(image.fd, 0) == 0) failures += " shrinking allowed;";
    if (::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, image.fd, 0) != MAP_FAILED) {
      failures += " a shared writable mapping allowed;";
    }
    // A write after the rebase is this process's own; a process forked from it sees it, and
    // nothing it writes comes back.
    g_data[10] = 222;
    const pid_t pid = ::fork();
    if (pid == 0) {
      const bool saw = g_data[10] == 222;
      g_data[10] = 333;
      g_data[11] = 444;
      ::_exit(saw ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures += " the fork saw another value;";
    if (g_data[10] != 222 || g_data[11] == 444) failures += " a fork's write came back;";
    ::close(image.fd);
    return failures;
  });
  EXPECT_EQ(failures, "");
}

// What the dynamic linker leaves after relocating a library's RELRO: a private read-only file
// mapping that holds anonymous pages. It goes into the image (read-only still, same bytes); a
// read-only file mapping without anonymous pages (text, constants) stays on its file.
TEST_F(FileImageTest, RelocatedReadOnlyDataGoesIntoTheImageAndPureFileMappingsStay) {
  std::string failures = in_child([]() -> std::string {
    const int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "cannot open the test binary";
    auto* relocated = static_cast<std::uint64_t*>(
        ::mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    auto* pure = static_cast<const char*>(::mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE, fd, 0));
    ::close(fd);
    if (relocated == MAP_FAILED || pure == MAP_FAILED) return "mmap of the test binary failed";
    for (std::size_t i = 0; i < 8; ++i) relocated[i] = pattern(i);  // the first page only
    if (::mprotect(relocated, 2 * kPage, PROT_READ) != 0) return "mprotect failed";
    const char first = pure[1];  // mapped, and still no anonymous page
    FileImage image;
    std::string error;
    if (!rebase_onto_file_image(image, error)) return "rebase failed: " + error;
    std::string failures;
    if (!backed_by_image(relocated)) failures += " the relocated mapping is not in the image;";
    if (backed_by_image(pure)) failures += " the pure file mapping went into the image;";
    if (anonymous_kb_at(relocated) != 0)
      failures += " the relocated mapping keeps anonymous pages;";
    for (std::size_t i = 0; i < 8; ++i) {
      if (relocated[i] != pattern(i)) return failures + " the relocated page changed";
    }
    if (pure[1] != first || pure[1] != 'E') failures += " the pure mapping changed;";
    // Still read-only: a write must fault. In a grandchild, so that the fault ends it alone.
    const pid_t pid = ::fork();
    if (pid == 0) {
      relocated[0] = 0;
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
      failures += " the mapping is writable;";
    return failures;
  });
  EXPECT_EQ(failures, "");
}

// glibc grows its own mmapped chunks with mremap: over a file mapping that would map other
// offsets of the file, or past its end (SIGBUS on the first write there).
TEST_F(FileImageTest, MallocKeepsWorkingIncludingReallocOfItsMmappedChunks) {
  std::string failures = in_child([]() -> std::string {
    ::mallopt(M_MMAP_THRESHOLD, 128 << 10);  // whatever the test process freed before
    auto* large = static_cast<char*>(std::malloc(1 << 20));
    if ((chunk_size_field(large) & 0x2) == 0) {
      return "the large block is not an mmapped chunk: the test tests nothing";
    }
    std::memset(large, 7, 1 << 20);
    FileImage image;
    std::string error;
    if (!rebase_onto_file_image(image, error)) return "rebase failed: " + error;
    large = static_cast<char*>(std::realloc(large, 16 << 20));
    if (large == nullptr) return "realloc failed";
    if (backed_by_image(large + (8 << 20))) return "realloc grew the chunk over the image";
    for (std::size_t i = 0; i < (1u << 20); i += 4093) {
      if (large[i] != 7) return "realloc lost the contents";
    }
    std::memset(large + (1 << 20), 9, (15 << 20));
    std::free(large);
    // Many small blocks: the brk heap grows past the image's end, then shrinks back into it.
    constexpr std::size_t kBlocks = 200000;
    auto** blocks = static_cast<char**>(std::calloc(kBlocks, sizeof(char*)));
    for (std::size_t i = 0; i < kBlocks; ++i) {
      blocks[i] = static_cast<char*>(std::malloc(64 + i % 200));
      std::memset(blocks[i], static_cast<int>(i), 64);
    }
    for (std::size_t i = 0; i < kBlocks; ++i) {
      if (blocks[i][63] != static_cast<char>(i)) return "a block changed";
      std::free(blocks[i]);
    }
    std::free(blocks);
    ::malloc_trim(0);
    auto* zeroed = static_cast<unsigned char*>(std::calloc(1 << 16, 1));
    for (std::size_t i = 0; i < (1u << 16); ++i) {
      if (zeroed[i] != 0) return "calloc returned non-zero memory";
    }
    std::free(zeroed);
    return "";
  });
  EXPECT_EQ(failures, "");
}

}  // namespace
}  // namespace wf::evaluator::sandbox_internal
