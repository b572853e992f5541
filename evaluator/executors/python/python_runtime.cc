#define PY_SSIZE_T_CLEAN
#include <Python.h>
// Python.h first, as CPython requires.
#include <cstdio>
#include <string>

#include "evaluator/executors/python/python_runtime.h"

namespace wf::evaluator {
namespace python_internal {
extern const char kDriverSource[];
}  // namespace python_internal

namespace {

// ---- Allocation failures
// ------------------------------------------------------------------------- A MemoryError counts as
// the sandbox's memory limit only when one of CPython's allocators really returned NULL during the
// call: user code can `raise MemoryError("...")` itself. The hooks forward every request to the
// allocator they replace and note failures.

struct AllocatorHook {
  PyMemAllocatorEx original{};
};
AllocatorHook g_hooks[3];  // PYMEM_DOMAIN_RAW, _MEM, _OBJ
bool g_allocation_failed = false;

void* note_failure(void* block, std::size_t size) {
  if (block == nullptr && size != 0) g_allocation_failed = true;
  return block;
}
void* hooked_malloc(void* ctx, std::size_t size) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  return note_failure(hook->original.malloc(hook->original.ctx, size), size);
}
void* hooked_calloc(void* ctx, std::size_t count, std::size_t size) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  return note_failure(hook->original.calloc(hook->original.ctx, count, size), count * size);
}
void* hooked_realloc(void* ctx, void* block, std::size_t size) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  return note_failure(hook->original.realloc(hook->original.ctx, block, size), size);
}
void hooked_free(void* ctx, void* block) {
  auto* hook = static_cast<AllocatorHook*>(ctx);
  hook->original.free(hook->original.ctx, block);
}

// In the child only: the zygote's allocations need no watching.
void hook_allocators() {
  const PyMemAllocatorDomain domains[3] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
  for (int i = 0; i < 3; ++i) {
    PyMem_GetAllocator(domains[i], &g_hooks[i].original);
    PyMemAllocatorEx hook{&g_hooks[i], hooked_malloc, hooked_calloc, hooked_realloc, hooked_free};
    PyMem_SetAllocator(domains[i], &hook);
  }
}

// Must import, or the runtime refuses to start: evaluator-api.md users rely on them.
const std::vector<std::string> kRequiredModules = {
    "math",        "re",     "json",        "datetime", "itertools", "functools",
    "collections", "string", "unicodedata", "decimal",  "fractions", "random",
};
// Imported when present: lazily imported helpers (_strptime, codecs) and common light extras.
// Kept lean on purpose: every module adds anonymous memory to the zygote, which each call pays
// for in fork, copy-on-write faults and exit (all optional modules of an earlier, longer list
// doubled the zygote's anonymous memory to 11 MB and cost ~0.3 ms of CPU per call). Heavy or rare
// modules (hashlib/_hashlib, uuid, dataclasses, threading, difflib, ...) are left out.
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
    "statistics",
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

constexpr const char kWarmUpCode[] =
    "import re, json, math\n"
    "def Z1(Z1K1):\n"
    "    print('warm')\n"
    "    return [json.dumps({'a': re.sub(r'\\d', 'x', Z1K1)}), str(math.sqrt(4)), {'k': True},"
    " None, ZPair('a', 'b')]\n";
constexpr const char kWarmUpArguments[] = R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"a1"}})";
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

    PyObject* module = PyImport_AddModule("_wf_driver");  // borrowed
    if (module == nullptr) {
      error = "cannot create the driver module: " + fetch_error();
      return false;
    }
    PyObject* globals = PyModule_GetDict(module);  // borrowed
    PyObject* ran = PyRun_String(python_internal::kDriverSource, Py_file_input, globals, globals);
    if (ran == nullptr) {
      error = "the Python driver failed to load: " + fetch_error();
      return false;
    }
    Py_DECREF(ran);
    run_call_ = PyDict_GetItemString(globals, "run_call");
    PyObject* freeze = PyDict_GetItemString(globals, "freeze");
    if (run_call_ == nullptr || freeze == nullptr) {
      error = "the Python driver lacks run_call/freeze";
      return false;
    }
    Py_INCREF(run_call_);

    // Children get an empty environment; drop the zygote's copy from os.environ too.
    PyObject* cleared =
        PyRun_String("import os\nos.environ.clear()\n", Py_file_input, globals, globals);
    if (cleared == nullptr) {
      error = "cannot clear os.environ: " + fetch_error();
      return false;
    }
    Py_DECREF(cleared);

    // One call in the zygote so that caches (re, json, codecs) are shared by every child.
    CallOutput warm = run(kWarmUpCode, "Z1", kWarmUpArguments, 1024);
    if (warm.z22_json.find("Z22K1") == std::string::npos ||
        warm.z22_json.find("\"errors\"") != std::string::npos) {
      error = "the warm-up call failed: " + warm.z22_json + warm.error_message;
      return false;
    }
    PyObject* frozen = PyObject_CallNoArgs(freeze);
    if (frozen == nullptr) {
      error = "gc.freeze failed: " + fetch_error();
      return false;
    }
    Py_DECREF(frozen);
    return true;
  }

  void after_fork() override {
    PyOS_AfterFork_Child();
    hook_allocators();
  }

  void warm_up() override { run(kChildWarmUpCode, "Z1", kWarmUpArguments, 1024); }

  CallOutput call(const CallInput& input) override {
    g_allocation_failed = false;
    return run(input.code, input.function_name, input.arguments_json, input.captured_output_limit);
  }

 private:
  CallOutput run(const std::string& code, const std::string& function_name,
                 const std::string& arguments_json, std::uint64_t captured_limit) {
    CallOutput output;
    PyObject* args = Py_BuildValue(
        "(NNNK)",
        PyUnicode_DecodeUTF8(code.data(), static_cast<Py_ssize_t>(code.size()), "surrogateescape"),
        PyUnicode_DecodeUTF8(function_name.data(), static_cast<Py_ssize_t>(function_name.size()),
                             "surrogateescape"),
        PyUnicode_DecodeUTF8(arguments_json.data(), static_cast<Py_ssize_t>(arguments_json.size()),
                             "surrogateescape"),
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
    return modules;
  }();
  return all;
}

std::unique_ptr<LanguageRuntime> make_python_runtime() {
  return std::make_unique<PythonRuntime>();
}

}  // namespace wf::evaluator
