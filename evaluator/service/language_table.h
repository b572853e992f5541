#pragma once
// Which executor family serves a programming language (evaluator-api.md §3 step 4): every language
// code of the reference's softwareLanguages list and its Z6xx ZID (zobjects.md §9, Z16). Matching
// is exact: "python-1", "Java" or "lua" have no executor.

#include <string_view>

namespace wf::evaluator {

enum class LanguageFamily { kNone, kPython, kJavaScript };

LanguageFamily language_family(std::string_view language);

}  // namespace wf::evaluator
