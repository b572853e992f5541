// Z828/Z928 (fetch persistent object) takes any string as the ZID to fetch. Only a real ZID may
// become a file name in the objects directory or a parameter of the wiki's query; anything else
// is the Z549 "invalid reference" error, and neither the disk nor the wiki is touched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

json fetch_call(const std::string& zid) {
  return {{"Z1K1", "Z7"}, {"Z7K1", "Z828"}, {"Z828K1", {{"Z1K1", "Z99"}, {"Z99K1", zid}}}};
}

json evaluate(Engine& engine, const json& call) {
  CallContext ctx;
  ctx.deadline = Clock::now() + std::chrono::seconds(10);
  return engine.evaluate({{"zobject", call}, {"doValidate", false}}, ctx);
}

std::string error_code(const json& r) {
  const std::string text = r.dump();
  for (const char* code : {"Z549", "Z504", "Z500"}) {
    if (text.find(std::string("\"") + code + "\"") != std::string::npos) return code;
  }
  return "";
}

class ZidEdge : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            ("wf-zid-edge-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(root_ / "objects");
    // A valid persisted object outside the objects directory.
    const json z2 = {{"Z1K1", "Z2"},
                     {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z12345"}}},
                     {"Z2K2", "outside the objects directory"}};
    std::ofstream(root_ / "secret.json") << z2.dump();
    std::ofstream(root_ / "objects" / "Z12345.json") << z2.dump();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::filesystem::path root_;
};

TEST_F(ZidEdge, ObjectsDirectoryReadsOnlyZidFiles) {
  EngineOptions options;
  options.objects_dir = root_ / "objects";
  auto engine = make_engine(options, nullptr, nullptr);
  // A real ZID is read from the directory.
  EXPECT_NE(evaluate(*engine, fetch_call("Z12345")).dump().find("outside the objects"),
            std::string::npos);
  for (const std::string bad : {"../secret", "Z1/../../secret", "/etc/passwd", "", "Z0", "z1"}) {
    SCOPED_TRACE(bad);
    const json r = evaluate(*engine, fetch_call(bad));
    EXPECT_EQ(r.dump().find("outside the objects"), std::string::npos) << r.dump();
    EXPECT_EQ(error_code(r), "Z549") << r.dump();
  }
}

TEST_F(ZidEdge, WikiIsAskedOnlyForZids) {
  auto wiki = std::make_shared<FakeWiki>(json::object(), std::filesystem::path());
  auto engine = make_engine({}, wiki, nullptr);
  for (const std::string bad : {"Z1&action=delete", "Z1|Z2", "Z1 ", "Z1%7CZ2", "Z１"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(error_code(evaluate(*engine, fetch_call(bad))), "Z549");
  }
  EXPECT_TRUE(wiki->requests().empty());
  // A real ZID still goes to the wiki (this one fails the fetch: Z500).
  EXPECT_EQ(error_code(evaluate(*engine, fetch_call("Z99999"))), "Z500");
  EXPECT_EQ(wiki->requests().size(), 1u);
}

}  // namespace
}  // namespace wf::orchestrator::testing
