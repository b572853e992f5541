#pragma once
// The bundled definition files, embedded at build time (see embed_definitions.cmake).
// kInternal: what the reference serves from memory (orchestrator-api.md §6) plus
// naturalLanguages.json. kFallback: objects the reference fetches from the wiki (Z24, Z41,
// languages, error types, programming languages ...), used only when no wiki has them.

#include <cstddef>
#include <string_view>

namespace wf::orchestrator::definitions_data {

struct Entry {
  std::string_view name;  // file name without .json, e.g. "Z801"
  std::string_view text;  // the file's JSON text
};

extern const Entry kInternal[];
extern const std::size_t kInternalCount;
extern const Entry kFallback[];
extern const std::size_t kFallbackCount;

}  // namespace wf::orchestrator::definitions_data
