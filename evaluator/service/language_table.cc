#include "evaluator/service/language_table.h"

#include <array>
#include <utility>

namespace wf::evaluator {
namespace {

using Entry = std::pair<std::string_view, LanguageFamily>;
constexpr auto kJs = LanguageFamily::kJavaScript;
constexpr auto kPy = LanguageFamily::kPython;

constexpr std::array<Entry, 30> kLanguages = {{
    {"javascript", kJs},
    {"Z600", kJs},
    {"javascript-es5", kJs},
    {"Z601", kJs},
    {"javascript-es2015", kJs},
    {"Z602", kJs},
    {"javascript-es2016", kJs},
    {"Z603", kJs},
    {"javascript-es2017", kJs},
    {"Z604", kJs},
    {"javascript-es2018", kJs},
    {"Z605", kJs},
    {"javascript-es2019", kJs},
    {"Z606", kJs},
    {"javascript-es2020", kJs},
    {"Z607", kJs},
    {"javascript-es2021", kJs},
    {"Z608", kJs},
    {"python", kPy},
    {"Z610", kPy},
    {"python-3", kPy},
    {"Z611", kPy},
    {"python-3-5", kPy},
    {"Z612", kPy},
    {"python-3-6", kPy},
    {"Z613", kPy},
    {"python-3-8", kPy},
    {"Z614", kPy},
    {"python-3-9", kPy},
    {"Z615", kPy},
}};

}  // namespace

LanguageFamily language_family(std::string_view language) {
  for (const auto& [code, family] : kLanguages) {
    if (code == language) return family;
  }
  return LanguageFamily::kNone;
}

}  // namespace wf::evaluator
