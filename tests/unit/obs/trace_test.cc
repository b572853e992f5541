#include "wf/obs/trace.h"

#include <gtest/gtest.h>

namespace {

using wf::obs::parse_traceparent;

TEST(Traceparent, ParsesTheW3CExample) {
  auto p = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->trace_id, "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(p->parent_id, "b7ad6b7169203331");
  EXPECT_TRUE(p->sampled);
  auto q = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
  ASSERT_TRUE(q);
  EXPECT_FALSE(q->sampled);
}

TEST(Traceparent, RejectsInvalidValues) {
  for (const char* bad : {
           "",
           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",        // no flags
           "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",     // upper case
           "00-00000000000000000000000000000000-b7ad6b7169203331-01",     // zero trace id
           "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",     // zero parent id
           "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",     // forbidden version
           "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-xx",  // v00 with extra data
           "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",     // separators
           "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",     // not hex
       }) {
    EXPECT_FALSE(parse_traceparent(bad)) << bad;
  }
}

TEST(Traceparent, AcceptsFutureVersionsWithExtraFields) {
  EXPECT_TRUE(
      parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-whatever"));
}

TEST(Traceparent, ContinuesAValidTraceWithANewSpan) {
  auto ctx = wf::obs::make_trace_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(ctx.trace_id, "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(ctx.parent_id, "b7ad6b7169203331");
  EXPECT_EQ(ctx.span_id.size(), 16u);
  EXPECT_NE(ctx.span_id, "b7ad6b7169203331");
  EXPECT_EQ(ctx.traceparent(), "00-0af7651916cd43dd8448eb211c80319c-" + ctx.span_id + "-01");
}

TEST(Traceparent, StartsANewTraceOnGarbage) {
  auto a = wf::obs::make_trace_context("garbage");
  auto b = wf::obs::make_trace_context(std::nullopt);
  EXPECT_EQ(a.trace_id.size(), 32u);
  EXPECT_TRUE(a.parent_id.empty());
  EXPECT_NE(a.trace_id, b.trace_id);
  EXPECT_TRUE(parse_traceparent(a.traceparent()));
}

}  // namespace
