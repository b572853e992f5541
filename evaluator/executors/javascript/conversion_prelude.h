#pragma once
// The JavaScript source of ZObject/ZPair, the §5.3 conversions, console and the per-call driver
// (conversion_prelude.js, embedded at build time). Internal to wf_javascript_runtime.

namespace wf::evaluator::javascript_detail {

extern const char kConversionPrelude[];

}  // namespace wf::evaluator::javascript_detail
