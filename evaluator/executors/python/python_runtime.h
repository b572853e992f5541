#pragma once
// The Python language runtime: embedded CPython 3.11 behind the sandbox's LanguageRuntime
// interface (evaluator/sandbox/runtime.h). initialize() runs once in the single-threaded zygote
// (isolated config, common std modules preloaded, gc.freeze); each forked child then serves one
// call per evaluator-api.md §5.1/§5.3, with these deliberate fixes:
//  * the code runs in ONE namespace dict, so its top-level imports/helpers are visible inside
//    the function;
//  * print()/sys.stdout/sys.stderr are captured (bounded by CallInput::captured_output_limit)
//    into CallOutput::captured_output instead of corrupting the result; sys.stdin is empty;
//  * the error message is e.args[0]; an exception without arguments gives its type name.
// CallOutput: ok is true whenever a Z22 was produced (value or user error); out_of_memory is set
// when the call ended in MemoryError. Owned by the sandbox.

#include <memory>
#include <string>
#include <vector>

#include "evaluator/sandbox/runtime.h"

namespace wf::evaluator {

// Modules imported in the zygote: children cannot open files, so anything user code may import
// must already be in sys.modules.
const std::vector<std::string>& python_preloaded_modules();

std::unique_ptr<LanguageRuntime> make_python_runtime();

}  // namespace wf::evaluator
