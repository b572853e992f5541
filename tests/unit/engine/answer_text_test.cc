// An Answer whose value is a terminal node (response.h) is written straight from the node: the
// same bytes as the JSON envelope's path (Answer::as_envelope, then finish_response_text) for
// every value and every set of trailing metadata pairs; any other value keeps the envelope.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "orchestrator/engine/node.h"
#include "orchestrator/engine/response.h"
#include "orchestrator/engine/run_metadata.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {
namespace {

// The orchestration* figures differ between two writes (end time, duration, CPU, memory): blank
// them in the text, so the rest compares byte for byte.
std::string masked(const std::string& text) {
  static const std::regex figure(R"re(("K1":"orchestration[A-Za-z]+","K2":)"[^"]*")re");
  return std::regex_replace(text, figure, "$1\"X\"");
}

// A string or reference object as the interpreter builds one of its own (not interned).
NodeP terminal(const char* tag, const char* key, std::string text) {
  NodeP n = Node::make_object();
  n->add(Key("Z1K1"), str_node(tag));
  n->add(Key(key), str_node(std::move(text)));
  return n;
}

// The node's answer written both ways: from the node, and from the envelope built of it.
void expect_same_text(const NodeP& value, const TrailingMeta& trailing) {
  const RunStart start = run_start();
  Answer fast{value, nullptr};
  ASSERT_TRUE(fast.terminal);
  bool fast_error = true;
  const std::string from_node = finish_answer_text(fast, trailing, start, &fast_error);
  EXPECT_TRUE(fast.terminal);  // written without building the envelope

  Answer slow{value, nullptr};
  const nlohmann::json envelope = slow.as_envelope();
  EXPECT_FALSE(slow.terminal);
  EXPECT_EQ(envelope, zobject::make_envelope(value->to_json(), nullptr));
  bool slow_error = !fast_error;
  const std::string from_json = finish_response_text(envelope, trailing, start, &slow_error);

  EXPECT_EQ(masked(from_node), masked(from_json));
  EXPECT_EQ(fast_error, slow_error);
  EXPECT_EQ(fast.has_error(), zobject::has_error(envelope));
}

TEST(AnswerText, TerminalValuesAsTheEnvelopePath) {
  const std::vector<NodeP> values = {
      terminal("Z6", "Z6K1", "World"),
      terminal("Z6", "Z6K1", ""),
      terminal("Z6", "Z6K1", "a longer text than eight bytes, twice over and more"),
      terminal("Z6", "Z6K1", "Z1"),      // reference-like: stays a Z6 object
      terminal("Z6", "Z6K1", "Z10001"),  // the same
      terminal("Z6", "Z6K1", "h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),  // UTF-8
      terminal("Z6", "Z6K1", "bad \xFF\xFE utf8"),                        // replaced
      terminal("Z6", "Z6K1", "q\"b\\s\n\r\t\b\f\x01\x1f\x7f/"),           // escapes
      terminal("Z6", "Z6K1", std::string("nul\0byte", 8)),
      terminal("Z9", "Z9K1", "Z24"),
      terminal("Z9", "Z9K1", "Z801"),
      terminal("Z9", "Z9K1", "Z10001"),
      z6_node("interned text"),
      z9_node("Z6"),
  };
  const std::vector<TrailingMeta> trailings = {
      {},
      {{"implementationType", "BuiltIn"}},
      {{"implementationId", "Z10002"}, {"implementationType", "Evaluated"}},
      {{"evaluationDuration", "2 ms"}, {"h\xC3\xA9 key", "v\xC3\xA9\n\"x\""}, {"Z1", "Z2"}},
      {{"errors", "not a Z5, but the key counts"}},
      // An orchestration* key among the trailing pairs takes the new figure in its place.
      {{"orchestrationDuration", "old"}, {"implementationType", "BuiltIn"}},
      {{"same", "1"}, {"same", "2"}},
  };
  for (const NodeP& value : values) {
    ASSERT_TRUE(Answer::is_terminal_value(*value)) << value->to_json().dump();
    for (const TrailingMeta& trailing : trailings) {
      SCOPED_TRACE(value->to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      expect_same_text(value, trailing);
    }
  }
}

// The text written pair by pair (write_text_pair: one append for plain keys and values) is
// nlohmann's dump of the canonical Z22 that finish_response builds of the same pairs: keys and
// values that are reference-like, need escapes, hold UTF-8 or invalid bytes, or take an
// orchestration* figure's place.
TEST(AnswerText, PairsAsTheCanonicalTreeDumps) {
  std::vector<TrailingMeta> trailings = {
      {{"implementationId", "Z902"}, {"implementationType", "BuiltIn"}},
      {{"Z1", "Z2"}, {"Z10001K1", "Z10001"}, {"Z1K", "Z"}},
      {{"q\"k\\", "v\n\x01\x7f"}, {"h\xC3\xA9 \xF0\x9F\x98\x80", "bad \xFF utf8"}},
      {{"", ""}, {"eight by", "sixteen bytes..."}, {"errors", "x"}},
      // Beyond the room reserved for the answer: the text grows while pairs are written.
      {{std::string(3000, 'k'), std::string(5000, 'v')}, {"after", "the growth"}, {"Z1", "Z2"}},
      {{"orchestrationDuration", "old"},
       {"orchestrationHostname", "Z1"},
       {"orchestration", "prefix only"},
       {"orchestrationCpuUsageX", "y"}},
  };
  // A byte to escape at each place of keys and values of 7 to 20 bytes (words and their tails).
  TrailingMeta placed;
  for (std::size_t size = 7; size <= 20; ++size) {
    for (std::size_t at = 0; at < size; ++at) {
      for (const char c : {'"', '\\', '\n', '\x1f', '\x80'}) {
        std::string text(size, 'a');
        text[at] = c;
        placed.emplace_back(text, "v" + text);
      }
    }
  }
  trailings.push_back(std::move(placed));
  for (const TrailingMeta& trailing : trailings) {
    for (const NodeP& value : {terminal("Z6", "Z6K1", "World"), terminal("Z9", "Z9K1", "Z24")}) {
      const RunStart start = run_start();
      Answer answer{value, nullptr};
      bool error = false;
      const std::string text = finish_answer_text(answer, trailing, start, &error);
      nlohmann::json envelope = zobject::make_envelope(value->to_json(), nullptr);
      add_trailing_metadata(envelope, trailing);
      const std::string tree = finish_response(std::move(envelope), start)
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      EXPECT_EQ(masked(text), masked(tree));
    }
  }
}

// Pairs given apart (StaticPairs: the cost breakdown) are written as if they ended `trailing`,
// on the node's path and the envelope's, where a key of the map already makes it the general
// path's; texts that need escapes or are reference-like too.
TEST(AnswerText, StaticPairsAsIfTheyEndedTheTrailingOnes) {
  using json = nlohmann::json;
  const std::vector<TextPair> more = {{"costResolve", "0.002 ms", true},
                                      {"costValidate", "Z1"},
                                      {"costEvaluate", "q\"\n\xC3\xA9"},
                                      {"orchestrationDuration", "in its place"}};
  const TrailingMeta trailing = {{"implementationId", "Z902"}, {"implementationType", "BuiltIn"}};
  TrailingMeta all = trailing;
  for (const TextPair& p : more) all.emplace_back(p.key, p.text);
  json meta = zobject::empty_metadata_map();
  zobject::map_set(meta, "costValidate", zobject::z6("in the map"));
  const json with_key = zobject::make_envelope(zobject::z6("x"), meta);
  json other_meta = zobject::empty_metadata_map();
  zobject::map_set(other_meta, "other", zobject::z6("y"));
  const json with_other = zobject::make_envelope(zobject::z6("x"), other_meta);
  for (const NodeP& value : {terminal("Z6", "Z6K1", "World"), terminal("Z9", "Z9K1", "Z24")}) {
    const RunStart start = run_start();
    Answer apart{value, nullptr};
    Answer together{value, nullptr};
    bool e1 = true;
    bool e2 = false;
    EXPECT_EQ(masked(finish_answer_text(apart, trailing, start, &e1, more)),
              masked(finish_answer_text(together, all, start, &e2)));
    EXPECT_EQ(e1, e2);
  }
  for (const json& envelope : {with_key, with_other}) {
    const RunStart start = run_start();
    Answer apart{nullptr, envelope};
    bool e1 = true;
    bool e2 = false;
    const std::string text = finish_answer_text(apart, trailing, start, &e1, more);
    EXPECT_EQ(masked(text), masked(finish_response_text(envelope, all, start, &e2)));
    EXPECT_EQ(e1, e2);
    json tree = envelope;
    add_trailing_metadata(tree, trailing, more);
    EXPECT_EQ(masked(text), masked(finish_response(std::move(tree), start)
                                       .dump(-1, ' ', false, json::error_handler_t::replace)));
  }
}

// orchestrationCpuUsage by hand is fmt's "{} ms" of the rounded microseconds / 1000, byte for
// byte: whole figures, trailing zeros, large ones, and what takes fmt (-0.0, NaN, beyond 1e15).
TEST(AnswerText, CpuUsageAsFmtWritesIt) {
  const auto expected = [](double rounded_us) {
    double ms = rounded_us / 1000.0;
    if (ms < 0) ms = 0;
    return fmt::format("{} ms", ms);
  };
  const auto written = [](double rounded_us) {
    char buf[40];
    return std::string(buf, write_cpu_ms(buf, rounded_us));
  };
  for (int n = -3; n <= 30000; ++n) {
    ASSERT_EQ(written(n), expected(n)) << n;
  }
  std::mt19937_64 rng(19);
  for (int i = 0; i < 200000; ++i) {
    const double n = static_cast<double>(rng() % 1'000'000'000'000'000ull);
    ASSERT_EQ(written(n), expected(n)) << n;
  }
  for (const double n :
       {-0.0, 999'999'999'999'999.0, 1e15, 1e15 + 2, 123456789012345678.0, 1e300,
        std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(), -1e20}) {
    EXPECT_EQ(written(n), expected(n)) << n;
  }
}

// The six figures, in the order the answer appends them, in their shapes.
TEST(AnswerText, OrchestrationTextsInOrder) {
  const RunStart start = run_start();
  const OrchestrationTexts texts(start);
  const std::array<std::string_view, OrchestrationTexts::kCount> keys = {
      "orchestrationMemoryUsage", "orchestrationCpuUsage", "orchestrationStartTime",
      "orchestrationEndTime",     "orchestrationDuration", "orchestrationHostname"};
  EXPECT_EQ(OrchestrationTexts::kKeys, keys);
  const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(std::string(texts.value(0)), std::regex(R"(\d+\.\d\d MiB)")));
  EXPECT_TRUE(std::regex_match(std::string(texts.value(1)), std::regex(R"(\d+(\.\d+)? ms)")));
  EXPECT_TRUE(std::regex_match(std::string(texts.value(2)), iso)) << texts.value(2);
  EXPECT_TRUE(std::regex_match(std::string(texts.value(3)), iso)) << texts.value(3);
  EXPECT_GE(texts.value(3), texts.value(2));
  EXPECT_TRUE(std::regex_match(std::string(texts.value(4)), std::regex(R"(\d+ ms)")));
  char host[256] = {0};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(texts.value(5), std::string_view(host));
}

TEST(AnswerText, OtherValuesAreNotTerminals) {
  using json = nlohmann::json;
  // A Z9 of a text that is not a reference: its canonical form is the object.
  EXPECT_FALSE(Answer::is_terminal_value(*terminal("Z9", "Z9K1", "not a ref")));
  EXPECT_FALSE(Answer::is_terminal_value(*terminal("Z9", "Z9K1", "Z10001K1")));
  // The wrong key for the tag, a third entry, a bare string.
  EXPECT_FALSE(Answer::is_terminal_value(*terminal("Z6", "Z9K1", "x")));
  EXPECT_FALSE(Answer::is_terminal_value(*terminal("Z9", "Z6K1", "Z1")));
  NodeP three = terminal("Z6", "Z6K1", "x");
  three->add(Key("Z6K2"), str_node("y"));
  EXPECT_FALSE(Answer::is_terminal_value(*three));
  EXPECT_FALSE(Answer::is_terminal_value(*str_node("bare")));
  // A Z6K1 that is an object, not a string.
  NodeP nested = Node::make_object();
  nested->add(Key("Z1K1"), str_node("Z6"));
  nested->add(Key("Z6K1"), z6_node("inner"));
  EXPECT_FALSE(Answer::is_terminal_value(*nested));
  // Lazy entries (a view of JSON the request owns) read differently in to_json().
  const json shared = {{"Z1K1", "Z6"}, {"Z6K1", "lazy"}};
  EXPECT_FALSE(Answer::is_terminal_value(*Node::from_shared(shared)));
  // Lists, nested objects and errors keep the envelope; its text is the general path's.
  const json list = zobject::to_normal(json::array({"Z6", "a", "b"}));
  const json object = {{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "text"}};
  for (const json& v : {list, zobject::to_normal(object)}) {
    EXPECT_FALSE(Answer::is_terminal_value(*Node::from_json(v))) << v.dump();
  }
}

TEST(AnswerText, EnvelopeAnswersKeepTheirPath) {
  using json = nlohmann::json;
  const json error = zobject::error_envelope(zobject::make_error_msg("Z507", "boom"));
  const json list =
      zobject::make_envelope(zobject::to_normal(json::array({"Z6", "a", "\xC3\xA9"})), nullptr);
  json meta = zobject::empty_metadata_map();
  zobject::map_set(meta, "implementationType", zobject::z6("BuiltIn"));
  const json with_map = zobject::make_envelope(zobject::z6("x"), meta);
  for (const json& envelope : {error, list, with_map}) {
    SCOPED_TRACE(envelope.dump());
    const TrailingMeta trailing = {{"implementationType", "BuiltIn"}};
    const RunStart start = run_start();
    Answer answer{nullptr, envelope};
    bool answer_error = false;
    bool json_error = false;
    EXPECT_EQ(masked(finish_answer_text(answer, trailing, start, &answer_error)),
              masked(finish_response_text(envelope, trailing, start, &json_error)));
    EXPECT_EQ(answer_error, json_error);
    EXPECT_EQ(answer.has_error(), zobject::has_error(envelope));
  }
  Answer error_answer{nullptr, error};
  EXPECT_TRUE(error_answer.has_error());
}

}  // namespace
}  // namespace wf::orchestrator::engine_detail
