#pragma once
// The texts of the standard metadata map's types as wf-evaluator writes them (nlohmann's dump(-1)
// of the normal form: Z1K1 first, no whitespace). The evaluator writes its answers' Z22K2 from
// them (evaluator/service/result_text.cc) and the orchestrator reads a map so written with one
// comparison per type (orchestrator/engine/code_answer.cc): one copy keeps the two in step.

#include <string_view>

namespace wf::zobject::metadata_text {

// Z883(Z6, Z1): the map's type.
inline constexpr std::string_view kMapType =
    R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z883"},)"
    R"("Z883K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z883K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
// Z882(Z6, Z1): a pair's type.
inline constexpr std::string_view kPairType =
    R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z882"},)"
    R"("Z882K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z882K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
// Z881(...: the head of a typed list's type, its item type to follow.
inline constexpr std::string_view kListTypeHead =
    R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z881"},"Z881K1":)";

}  // namespace wf::zobject::metadata_text
