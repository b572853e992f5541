#define PY_SSIZE_T_CLEAN
#include <Python.h>
// Python.h first, as CPython requires.
#include <fcntl.h>
#include <malloc.h>
#include <marshal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "evaluator/executors/python/compact_region.h"
#include "evaluator/executors/python/fresh_heap.h"
#include "evaluator/executors/python/python_runtime.h"

namespace wf::evaluator {
namespace python_internal {
extern const char kDriverSource[];
}  // namespace python_internal

namespace {

// ---- Allocations in the child -------------------------------------------------------------------
// A MemoryError counts as the sandbox's memory limit only when one of CPython's allocators really
// returned NULL during the call: user code can `raise MemoryError("...")` itself. The hooks note
// failures; they serve new blocks of every domain (RAW, MEM, OBJ; the child has one thread) from
// the child's FreshHeap (fresh_heap.h: fewer copy-on-write faults) and hand everything else, and
// every block the zygote allocated, to the allocator they replace.

struct AllocatorHook {
  PyMemAllocatorEx original{};
  python_internal::FreshHeap* fresh = nullptr;
};
AllocatorHook g_hooks[3];  // PYMEM_DOMAIN_RAW, _MEM, _OBJ
python_internal::FreshHeap g_fresh_heap;
bool g_allocation_failed = false;
// In a sandbox child (after_fork ran). Beside the hooks, which a child writes anyway: a flag in the
// runtime object would cost a copy-on-write fault of its own.
bool g_forked = false;

void* note_failure(void* block, std::size_t size) {
  if (block == nullptr && size != 0) g_allocation_failed = true;
  return block;
}
bool fresh_owns(const AllocatorHook* hook, const void* block) {
  return hook->fresh != nullptr && block != nullptr && hook->fresh->owns(block);
}
void* hooked_malloc(void* ctx, std::size_t size) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  if (hook->fresh != nullptr) {
    if (void* block = hook->fresh->allocate(size)) return block;
  }
  return note_failure(hook->original.malloc(hook->original.ctx, size), size);
}
void* hooked_calloc(void* ctx, std::size_t count, std::size_t size) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  if (hook->fresh != nullptr && size != 0 &&
      count <= python_internal::FreshHeap::kLargestBlock / size) {
    if (void* block = hook->fresh->allocate(count * size))
      return std::memset(block, 0, count * size);
  }
  return note_failure(hook->original.calloc(hook->original.ctx, count, size), count * size);
}
void* hooked_realloc(void* ctx, void* block, std::size_t size) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  if (!fresh_owns(hook, block)) {
    return note_failure(hook->original.realloc(hook->original.ctx, block, size), size);
  }
  const std::size_t capacity = hook->fresh->capacity(block);
  if (size <= capacity) return block;
  void* moved = hooked_malloc(ctx, size);
  if (moved == nullptr) return nullptr;  // the block stays valid, as realloc promises
  std::memcpy(moved, block, capacity);
  hook->fresh->release(block);
  return moved;
}
void hooked_free(void* ctx, void* block) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  if (fresh_owns(hook, block)) return hook->fresh->release(block);
  hook->original.free(hook->original.ctx, block);
}

// In the child only: the zygote's allocations need no watching, and its objects live in its own
// heap.
void hook_allocators() {
  const PyMemAllocatorDomain domains[3] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
  for (int i = 0; i < 3; ++i) {
    PyMem_GetAllocator(domains[i], &g_hooks[i].original);
    g_hooks[i].fresh = &g_fresh_heap;
    PyMemAllocatorEx hook{&g_hooks[i], hooked_malloc, hooked_calloc, hooked_realloc, hooked_free};
    PyMem_SetAllocator(domains[i], &hook);
  }
}

// ---- The driver's own region (compact_region.h) --------------------------------------------
// While the supervisor loads the driver, every block of the MEM and OBJ domains comes from one
// region, so the objects every call touches (the driver's functions, code, constants, classes)
// share pages instead of lying among the modules' objects. The hooks stay installed after that
// (blocks of the region are never handed to the allocators they replace; one that grows moves to
// them) and serve everything else from those allocators.

struct RegionHook {
  PyMemAllocatorEx original{};
};
RegionHook g_region_hooks[2];  // PYMEM_DOMAIN_MEM, _OBJ
python_internal::CompactRegion g_driver_region;
bool g_region_open = false;
// The driver's objects took ~220 KiB when measured; untouched address space costs nothing.
constexpr std::size_t kDriverRegionBytes = std::size_t{4} << 20;

void* region_malloc(void* ctx, std::size_t size) {
  auto* hook = static_cast<RegionHook*>(ctx);
  if (g_region_open) {
    if (void* block = g_driver_region.allocate(size)) return block;
  }
  return hook->original.malloc(hook->original.ctx, size);
}
void* region_calloc(void* ctx, std::size_t count, std::size_t size) {
  auto* hook = static_cast<RegionHook*>(ctx);
  if (g_region_open && (size == 0 || count <= SIZE_MAX / size)) {
    if (void* block = g_driver_region.allocate(count * size))
      return std::memset(block, 0, count * size);
  }
  return hook->original.calloc(hook->original.ctx, count, size);
}
void* region_realloc(void* ctx, void* block, std::size_t size) {
  auto* hook = static_cast<RegionHook*>(ctx);
  if (block == nullptr) return region_malloc(ctx, size);
  if (!g_driver_region.owns(block)) return hook->original.realloc(hook->original.ctx, block, size);
  const std::size_t had = g_driver_region.size_of(block);
  if (size <= had) return block;
  void* moved = region_malloc(ctx, size);
  if (moved != nullptr) std::memcpy(moved, block, had);
  return moved;  // the old block stays a hole in the region
}
void region_free(void* ctx, void* block) {
  auto* hook = static_cast<RegionHook*>(ctx);
  if (block != nullptr && g_driver_region.owns(block)) return;
  hook->original.free(hook->original.ctx, block);
}

// Once, in the supervisor, before the driver loads. False (and nothing installed) when the region
// cannot be mapped: the driver then loads from CPython's allocators as before.
bool hook_region_allocators() {
  if (!g_driver_region.reserve(kDriverRegionBytes)) return false;
  const PyMemAllocatorDomain domains[2] = {PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
  for (int i = 0; i < 2; ++i) {
    PyMem_GetAllocator(domains[i], &g_region_hooks[i].original);
    PyMemAllocatorEx hook{&g_region_hooks[i], region_malloc, region_calloc, region_realloc,
                          region_free};
    PyMem_SetAllocator(domains[i], &hook);
  }
  return true;
}

// Must import, or the runtime refuses to start: evaluator-api.md users rely on them.
const std::vector<std::string> kRequiredModules = {
    "math",        "re",     "json",        "datetime", "itertools", "functools",
    "collections", "string", "unicodedata", "decimal",  "fractions",
};
// Required too, but kept as code (kStoredModules): imported in the zygote, `random` registers an
// at-fork hook that reseeds it in every child, a Python-level call that cost each call ~0.1 ms
// and ~12 page faults, while real implementations hardly import it (../shared/realwf); a call
// that does runs the module then (~1.7 ms), with a fresh seed.
const std::vector<std::string> kRequiredStoredModules = {"random"};
// Imported when present: lazily imported helpers (_strptime, codecs) and common light extras.
// Kept lean on purpose: every module adds anonymous memory to the zygote, which each call pays
// for in fork, copy-on-write faults and exit (all optional modules of an earlier, longer list
// doubled the zygote's anonymous memory to 11 MB and cost ~0.3 ms of CPU per call). Heavy or rare
// modules (hashlib, dataclasses, difflib, ...) are kept as code only (kStoredModules below).
const std::vector<std::string> kOptionalModules = {
    "_strptime",
    "encodings.idna",
    "encodings.punycode",
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.utf_16",
    "encodings.utf_32",
    "encodings.cp1252",
    "encodings.raw_unicode_escape",
    "encodings.unicode_escape",
    "io",
    "heapq",
    "bisect",
    "time",
    "copy",
    "operator",
    "textwrap",
    "typing",
    "enum",
    "array",
    "struct",
    "base64",
    "cmath",
    "numbers",
    "calendar",
    "contextlib",
    "abc",
    "types",
    "weakref",
    "zlib",
    "binascii",
    "keyword",
    "signal",
};

// Pure-Python standard modules that real implementations import (../shared/realwf/modules_a.json)
// and light relatives: found and compiled in the zygote, then kept as code objects only (with the
// extension modules they need loaded), so a call pays for one only when it imports it. See
// install_modules in python_driver.py and docs/compatibility.md "Modules". Not uuid: its import
// calls uname, which the sandbox forbids.
const std::vector<std::string> kStoredModules = {
    "hashlib",      "hmac",        "secrets",
    "html",         "html.parser", "html.entities",
    "urllib.parse", "ipaddress",   "csv",
    "pkgutil",      "token",       "tokenize",
    "difflib",      "dataclasses", "pprint",
    "graphlib",     "colorsys",    "fnmatch",
    "shlex",        "reprlib",     "xml.etree.ElementTree",
    "random",      // kRequiredStoredModules
    "statistics",  // imports random
    "http",        // the package of the http.client stand-in (HTTPStatus)
};
// Modules that need the network or processes: they import, and each of their functions fails with
// a clear error when called. The second name, when set, is a module whose attributes they forward
// (urllib.request re-exports urllib.parse's quote, urlencode, ...).
const std::vector<std::pair<std::string, std::string>> kUnavailableModules = {
    {"urllib.request", "urllib.parse"},
    {"socket", ""},
    {"ssl", ""},
    {"subprocess", ""},
    {"http.client", ""},
    {"multiprocessing", ""},
};

constexpr const char kWarmUpCode[] =
    "import re, json, math\n"
    "def Z1(Z1K1):\n"
    "    print('warm')\n"
    "    return [json.dumps({'a': re.sub(r'\\d', 'x', Z1K1)}), str(math.sqrt(4)), {'k': True},"
    " None, ZPair('a', 'b')]\n";
constexpr const char kWarmUpArguments[] = R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"a1"}})";
// CPython 3.11 counts calls of each function and executions of each adaptive instruction in the
// code object itself until it has quickened and specialised them: in a child, every such count is
// a write, so a copy-on-write fault on the page of the code object. Run often enough in the
// zygote, the driver's and the json module's code is specialised there once, and a child's call
// only reads it.
constexpr int kZygoteWarmUpCalls = 64;
// The warm-up in each child is deliberately small: every page it writes is a copy-on-write fault
// (~3 us each here), and the zygote's warm-up above already filled the shared caches. Measured:
// the full warm-up costs +0.5 ms of CPU per call, this one about nothing beyond the call itself.
constexpr const char kChildWarmUpCode[] = "def Z1(Z1K1):\n    return [Z1K1, True]\n";

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\u%04x", u);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out;
}

// The user-error Z22 of §5 (same shape as _failure in python_driver.py), for the rare case where
// the driver itself fails (e.g. MemoryError while encoding the answer).
std::string failure_z22(const std::string& message) {
  const std::string pair_type =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z882"},)"
      R"("Z882K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z882K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
  const std::string list_type =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z881"},"Z881K1":)" +
      pair_type + "}";
  const std::string map_type =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z883"},)"
      R"("Z883K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z883K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
  const std::string error = R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z5"},"Z5K2":{"Z1K1":"Z6","Z6K1":")" +
                            json_escape(message) + "\"}}";
  return R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":{"Z1K1":"Z9","Z9K1":"Z24"},"Z22K2":)"
         R"({"Z1K1":)" +
         map_type + R"(,"K1":{"Z1K1":)" + list_type + R"(,"K1":{"Z1K1":)" + pair_type +
         R"(,"K1":{"Z1K1":"Z6","Z6K1":"errors"},"K2":)" + error + R"(},"K2":{"Z1K1":)" + list_type +
         "}}}}";
}

// Python's current exception as text ("TypeError: ..."), cleared.
std::string fetch_error() {
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  std::string text = "unknown Python error";
  if (value != nullptr) {
    PyObject* s = PyObject_Str(value);
    const char* utf8 = s != nullptr ? PyUnicode_AsUTF8(s) : nullptr;
    const char* type_name = type != nullptr ? reinterpret_cast<PyTypeObject*>(type)->tp_name : "";
    if (utf8 != nullptr) text = std::string(type_name) + ": " + utf8;
    Py_XDECREF(s);
  }
  PyErr_Clear();
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  return text;
}

class PythonRuntime final : public LanguageRuntime {
 public:
  const char* name() const override { return "python"; }

  bool initialize(std::string& error) override {
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    config.write_bytecode = 0;
    config.site_import = 0;
    config.parse_argv = 0;
    config.user_site_directory = 0;
    PyStatus status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
      error = std::string("Py_InitializeFromConfig: ") +
              (status.err_msg != nullptr ? status.err_msg : "failed") +
              " (install libpython3.11 and its standard library, python3.11-minimal)";
      return false;
    }
    for (const auto& module : kRequiredModules) {
      PyObject* imported = PyImport_ImportModule(module.c_str());
      if (imported == nullptr) {
        error = "cannot import the standard module '" + module + "': " + fetch_error() +
                " (install the full python3.11 standard library)";
        return false;
      }
      Py_DECREF(imported);
    }
    for (const auto& module : kOptionalModules) {
      PyObject* imported = PyImport_ImportModule(module.c_str());
      if (imported == nullptr) {
        PyErr_Clear();
      } else {
        Py_DECREF(imported);
      }
    }

    PyObject* globals = load_driver(error);  // borrowed
    if (globals == nullptr) return false;
    run_call_ = PyDict_GetItemString(globals, "run_call");
    PyObject* freeze = PyDict_GetItemString(globals, "freeze");
    if (run_call_ == nullptr || freeze == nullptr) {
      error = "the Python driver lacks run_call/freeze";
      return false;
    }
    Py_INCREF(run_call_);
    if (!install_modules(globals, error)) return false;
    if (!map_module_store(error)) return false;

    // Children get an empty environment; drop the zygote's copy from os.environ too.
    PyObject* cleared =
        PyRun_String("import os\nos.environ.clear()\n", Py_file_input, globals, globals);
    if (cleared == nullptr) {
      error = "cannot clear os.environ: " + fetch_error();
      return false;
    }
    Py_DECREF(cleared);

    // One call in the zygote so that caches (re, json, codecs) are shared by every child.
    CallOutput warm = run(kWarmUpCode, "Z1", kWarmUpArguments, "", 1024);
    if (warm.z22_json.find("Z22K1") == std::string::npos ||
        warm.z22_json.find("\"errors\"") != std::string::npos) {
      error = "the warm-up call failed: " + warm.z22_json + warm.error_message;
      return false;
    }
    for (int i = 1; i < kZygoteWarmUpCalls; ++i) run(kWarmUpCode, "Z1", kWarmUpArguments, "", 1024);
    PyObject* frozen = PyObject_CallNoArgs(freeze);
    if (frozen == nullptr) {
      error = "gc.freeze failed: " + fetch_error();
      return false;
    }
    Py_DECREF(frozen);
    return true;
  }

  // Runs the driver as module _wf_driver; returns its globals (borrowed), or nullptr with `error`.
  // Compiled first (the compiler's temporary objects stay out of the region), then unmarshalled
  // and executed with the region open: its code objects, constants, functions, classes and the
  // module itself are made one after the other there (compact_region.h).
  static PyObject* load_driver(std::string& error) {
    PyObject* compiled =
        Py_CompileString(python_internal::kDriverSource, "<string>", Py_file_input);
    PyObject* marshalled =
        compiled != nullptr ? PyMarshal_WriteObjectToString(compiled, Py_MARSHAL_VERSION) : nullptr;
    Py_XDECREF(compiled);
    if (marshalled == nullptr) {
      error = "the Python driver failed to compile: " + fetch_error();
      return nullptr;
    }
    g_region_open = hook_region_allocators();
    PyObject* module = PyImport_AddModule("_wf_driver");                         // borrowed
    PyObject* globals = module != nullptr ? PyModule_GetDict(module) : nullptr;  // borrowed
    // As PyRun_String, which ran the driver before, sets it.
    if (globals != nullptr &&
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) != 0) {
      globals = nullptr;
    }
    PyObject* code = globals != nullptr
                         ? PyMarshal_ReadObjectFromString(PyBytes_AS_STRING(marshalled),
                                                          PyBytes_GET_SIZE(marshalled))
                         : nullptr;
    PyObject* ran = code != nullptr ? PyEval_EvalCode(code, globals, globals) : nullptr;
    g_region_open = false;
    Py_XDECREF(code);
    Py_DECREF(marshalled);
    if (ran == nullptr) {
      error = "the Python driver failed to load: " + fetch_error();
      return nullptr;
    }
    Py_DECREF(ran);
    return globals;
  }

  // Moves the module store's marshalled code (~1.1 MB) out of the heap into one read-only private
  // mapping of a memfd: mapped file pages without anonymous ones are not copied by fork (no page
  // table entries to copy, nothing to tear down at the child's exit), where the same bytes on the
  // malloc heap were ~270 anonymous pages in every fork and exit. A child that wrote to the
  // mapping (it cannot through the read-only memoryviews) would get a private copy: nothing it
  // does reaches the zygote or another child. Each entry's bytes become a read-only memoryview,
  // which marshal.loads reads alike; malloc_trim returns the freed heap pages.
  static bool map_module_store(std::string& error) {
    PyObject* meta_path = PySys_GetObject("meta_path");  // borrowed
    PyObject* store = meta_path != nullptr && PyList_Check(meta_path) && PyList_Size(meta_path) > 0
                          ? PyList_GetItem(meta_path, 0)
                          : nullptr;  // borrowed; install_modules put the store first
    PyObject* stored = store != nullptr ? PyObject_GetAttrString(store, "stored") : nullptr;
    if (stored == nullptr || !PyDict_Check(stored)) {
      Py_XDECREF(stored);
      PyErr_Clear();
      error = "the Python driver's module store is missing";
      return false;
    }
    struct Entry {
      PyObject* name;   // borrowed from `stored`
      PyObject* entry;  // (marshalled bytes, is_package, origin), borrowed
      std::size_t offset;
    };
    std::vector<Entry> entries;
    std::size_t total = 0;
    Py_ssize_t position = 0;
    PyObject* name = nullptr;
    PyObject* entry = nullptr;
    while (PyDict_Next(stored, &position, &name, &entry)) {
      if (!PyTuple_Check(entry) || PyTuple_Size(entry) != 3 ||
          !PyBytes_Check(PyTuple_GetItem(entry, 0))) {
        Py_DECREF(stored);
        error = "the Python driver's module store has an entry of an unexpected shape";
        return false;
      }
      entries.push_back({name, entry, total});
      total += static_cast<std::size_t>(PyBytes_Size(PyTuple_GetItem(entry, 0)));
    }
    if (total == 0) {
      Py_DECREF(stored);
      return true;
    }
    std::string why;
    char* base = map_copy_of(entries, total, why);
    if (base == nullptr) {
      Py_DECREF(stored);
      error = "cannot map the module store: " + why;
      return false;
    }
    bool ok = true;
    for (const Entry& e : entries) {
      PyObject* bytes = PyTuple_GetItem(e.entry, 0);
      PyObject* view = PyMemoryView_FromMemory(base + e.offset, PyBytes_Size(bytes), PyBUF_READ);
      PyObject* replaced = view != nullptr ? PyTuple_Pack(3, view, PyTuple_GetItem(e.entry, 1),
                                                          PyTuple_GetItem(e.entry, 2))
                                           : nullptr;
      Py_XDECREF(view);
      // Replacing the value of an existing key: the entries' borrowed names stay valid.
      ok = replaced != nullptr && PyDict_SetItem(stored, e.name, replaced) == 0;
      Py_XDECREF(replaced);
      if (!ok) break;
    }
    Py_DECREF(stored);
    if (!ok) {
      error = "cannot map the module store: " + fetch_error();
      return false;
    }
    ::malloc_trim(0);
    return true;
  }

  // A read-only private mapping of a memfd that holds the entries' bytes one after the other.
  template <typename Entries>
  static char* map_copy_of(const Entries& entries, std::size_t total, std::string& why) {
    const int fd = ::memfd_create("wf-module-store", MFD_CLOEXEC);
    if (fd < 0) {
      why = std::string("memfd_create: ") + std::strerror(errno);
      return nullptr;
    }
    bool written = ::ftruncate(fd, static_cast<off_t>(total)) == 0;
    for (const auto& e : entries) {
      PyObject* bytes = PyTuple_GetItem(e.entry, 0);
      const char* data = PyBytes_AsString(bytes);
      std::size_t left = static_cast<std::size_t>(PyBytes_Size(bytes));
      off_t at = static_cast<off_t>(e.offset);
      while (written && left > 0) {
        const ssize_t n = ::pwrite(fd, data, left, at);
        if (n < 0 && errno == EINTR) continue;
        written = n > 0;
        if (!written) break;
        data += n;
        at += n;
        left -= static_cast<std::size_t>(n);
      }
    }
    void* base = written ? ::mmap(nullptr, total, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (!written || base == MAP_FAILED) why = std::strerror(errno);
    ::close(fd);
    return base == MAP_FAILED ? nullptr : static_cast<char*>(base);
  }

  // Calls install_modules of the driver with kStoredModules and kUnavailableModules.
  static bool install_modules(PyObject* globals, std::string& error) {
    PyObject* install = PyDict_GetItemString(globals, "install_modules");  // borrowed
    PyObject* names = PyList_New(0);
    PyObject* unavailable = PyDict_New();
    bool ok = install != nullptr && names != nullptr && unavailable != nullptr;
    for (const auto& name : kStoredModules) {
      PyObject* text = ok ? PyUnicode_FromString(name.c_str()) : nullptr;
      ok = text != nullptr && PyList_Append(names, text) == 0;
      Py_XDECREF(text);
    }
    for (const auto& [name, forward] : kUnavailableModules) {
      PyObject* target =
          forward.empty() ? Py_NewRef(Py_None) : PyUnicode_FromString(forward.c_str());
      ok = ok && target != nullptr && PyDict_SetItemString(unavailable, name.c_str(), target) == 0;
      Py_XDECREF(target);
    }
    PyObject* stored =
        ok ? PyObject_CallFunctionObjArgs(install, names, unavailable, nullptr) : nullptr;
    Py_XDECREF(names);
    Py_XDECREF(unavailable);
    if (stored == nullptr) {
      error =
          "the Python driver could not install the module store: " +
          (PyErr_Occurred() != nullptr ? fetch_error() : std::string("install_modules missing"));
      return false;
    }
    for (const auto& name : kRequiredStoredModules) {
      PyObject* text = PyUnicode_FromString(name.c_str());
      const int found = text != nullptr ? PySequence_Contains(stored, text) : -1;
      Py_XDECREF(text);
      if (found != 1) {
        PyErr_Clear();
        Py_DECREF(stored);
        error = "cannot find the standard module '" + name +
                "' (install the full python3.11 standard library)";
        return false;
      }
    }
    Py_DECREF(stored);
    return true;
  }

  // CPython's allocators (pymalloc arenas, glibc malloc) never read memory they released back as
  // zeros, so its memory can live in the supervisor's file image (file_image.h).
  bool rebase_memory() const override { return true; }

  // The hooks first: PyOS_AfterFork_Child re-creates the interpreter's locks (raw-domain blocks,
  // ~6 copy-on-write faults per child when glibc's malloc served them from the zygote's free
  // chunks).
  void after_fork() override {
    g_forked = true;
    hook_allocators();
    PyOS_AfterFork_Child();
  }

  // In the supervisor and the zygote (the last Python code either runs before children are
  // forked), a full collection then empties CPython's free lists: the blocks of the tuples,
  // lists, dicts and floats the warm-up freed lie on pages every child shares, and a child's new
  // objects of those kinds were made there first (a copy-on-write fault on each page, ~9 per
  // call) instead of in its FreshHeap. It also collects the warm-up's reference cycles (its
  // namespace and function). In a child, its own free lists are its own memory.
  void warm_up() override {
    run(kChildWarmUpCode, "Z1", kWarmUpArguments, "", 1024);
    if (!g_forked) PyGC_Collect();
  }

  CallOutput call(const CallInput& input) override {
    g_allocation_failed = false;
    return run(input.code, input.function_name, input.arguments_json, input.converters_json,
               input.captured_output_limit);
  }

 private:
  CallOutput run(const std::string& code, const std::string& function_name,
                 const std::string& arguments_json, const std::string& converters_json,
                 std::uint64_t captured_limit) {
    CallOutput output;
    PyObject* args = Py_BuildValue(
        "(NNNNK)",
        PyUnicode_DecodeUTF8(code.data(), static_cast<Py_ssize_t>(code.size()), "surrogateescape"),
        PyUnicode_DecodeUTF8(function_name.data(), static_cast<Py_ssize_t>(function_name.size()),
                             "surrogateescape"),
        PyUnicode_DecodeUTF8(arguments_json.data(), static_cast<Py_ssize_t>(arguments_json.size()),
                             "surrogateescape"),
        PyUnicode_DecodeUTF8(converters_json.data(),
                             static_cast<Py_ssize_t>(converters_json.size()), "surrogateescape"),
        static_cast<unsigned long long>(captured_limit));
    PyObject* result = args != nullptr ? PyObject_Call(run_call_, args, nullptr) : nullptr;
    Py_XDECREF(args);
    if (result == nullptr) {
      output.out_of_memory = g_allocation_failed && PyErr_ExceptionMatches(PyExc_MemoryError) != 0;
      std::string text = fetch_error();
      output.ok = true;
      output.z22_json = failure_z22(output.out_of_memory ? "MemoryError" : text);
      return output;
    }
    char* z22 = nullptr;
    char* captured = nullptr;
    Py_ssize_t z22_size = 0;
    Py_ssize_t captured_size = 0;
    if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 4 ||
        PyBytes_AsStringAndSize(PyTuple_GET_ITEM(result, 1), &z22, &z22_size) != 0 ||
        PyBytes_AsStringAndSize(PyTuple_GET_ITEM(result, 2), &captured, &captured_size) != 0) {
      PyErr_Clear();
      Py_DECREF(result);
      output.error_message = "the Python driver returned an unexpected value";
      return output;
    }
    output.ok = PyObject_IsTrue(PyTuple_GET_ITEM(result, 0)) == 1;
    output.out_of_memory = g_allocation_failed && PyObject_IsTrue(PyTuple_GET_ITEM(result, 3)) == 1;
    output.z22_json.assign(z22, static_cast<std::size_t>(z22_size));
    output.captured_output.assign(captured, static_cast<std::size_t>(captured_size));
    Py_DECREF(result);
    PyErr_Clear();
    return output;
  }

  PyObject* run_call_ = nullptr;
};

}  // namespace

const std::vector<std::string>& python_preloaded_modules() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> modules = kRequiredModules;
    modules.insert(modules.end(), kOptionalModules.begin(), kOptionalModules.end());
    modules.insert(modules.end(), kStoredModules.begin(), kStoredModules.end());
    for (const auto& entry : kUnavailableModules) modules.push_back(entry.first);
    return modules;
  }();
  return all;
}

std::unique_ptr<LanguageRuntime> make_python_runtime() {
  return std::make_unique<PythonRuntime>();
}

}  // namespace wf::evaluator
