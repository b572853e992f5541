// normalize / canonicalize / validate on any JSON value. Invariants (zobjects.md §5, §7):
// normalize and canonicalize agree on what is a ZObject; a normal form normalizes to itself;
// canonicalize(x) equals to_canonical(normalize(x)); errors are Z5s.
#include <string_view>

#include "fuzz_target.h"
#include "wf/zobject/zobject.h"

namespace zo = wf::zobject;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = zo::parse(std::string_view(reinterpret_cast<const char*>(data), size), 32);
  if (!parsed) return 0;
  const zo::json& input = *parsed;
  auto normal = zo::normalize(input);
  auto canonical = zo::canonicalize(input);
  WF_FUZZ_CHECK(normal.has_value() == canonical.has_value());
  if (!normal) {
    WF_FUZZ_CHECK(!zo::error_type(normal.error()).empty());
    return 0;
  }
  WF_FUZZ_CHECK(*canonical == zo::to_canonical(*normal));
  auto again = zo::normalize(*normal);
  WF_FUZZ_CHECK(again.has_value() && *again == *normal);
  zo::check_mixed(input);
  const zo::json verdict = zo::validate_normal(*normal);
  WF_FUZZ_CHECK(verdict.is_null() || !zo::error_type(verdict).empty());
  return 0;
}
