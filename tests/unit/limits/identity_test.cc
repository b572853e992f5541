#include "wf/limits/identity.h"

#include <gtest/gtest.h>

namespace wf::limits {
namespace {

IdentityOptions options() {
  IdentityOptions o;
  o.user_header = "X-Wikifunctions-User";
  o.trusted_user_peers = loopback();
  o.trusted_proxies = *parse_cidr_list("10.0.0.0/8");
  return o;
}

TEST(Cidr, ParsesAndMatchesV4AndV6) {
  auto net = parse_cidr("10.1.0.0/16");
  ASSERT_TRUE(net);
  EXPECT_TRUE(contains(*net, *parse_ip("10.1.200.3")));
  EXPECT_FALSE(contains(*net, *parse_ip("10.2.0.1")));
  auto v6 = parse_cidr("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(contains(*v6, *parse_ip("2001:db8:1::5")));
  EXPECT_FALSE(contains(*v6, *parse_ip("2001:db9::5")));
  EXPECT_TRUE(contains(*parse_cidr("0.0.0.0/0"), *parse_ip("8.8.8.8")));
  // An IPv4-mapped IPv6 peer is the IPv4 address.
  EXPECT_TRUE(contains(loopback(), *parse_ip("::ffff:127.0.0.1")));
  EXPECT_TRUE(contains(loopback(), *parse_ip("::1")));
}

// An address's text (the caller's key and log address): IPv4 written by hand, as inet_ntop would.
TEST(Cidr, AddressTextIsInetNtops) {
  for (const char* text : {"0.0.0.0", "127.0.0.1", "10.0.0.9", "192.168.100.255", "1.22.203.4",
                           "255.255.255.255", "99.100.9.10"}) {
    EXPECT_EQ(to_string(*parse_ip(text)), text);
  }
  EXPECT_EQ(to_string(*parse_ip("::ffff:10.20.30.40")), "10.20.30.40");
  EXPECT_EQ(to_string(*parse_ip("2001:db8::5")), "2001:db8::5");
  EXPECT_EQ(to_string(*parse_ip("::1")), "::1");
}

TEST(Cidr, RejectsBadEntriesNamingThem) {
  EXPECT_FALSE(parse_cidr("10.0.0.0/33"));
  EXPECT_FALSE(parse_cidr("not-an-ip"));
  auto list = parse_cidr_list("127.0.0.1, 10.0.0.0/8,bogus/3");
  ASSERT_FALSE(list);
  EXPECT_NE(list.error().find("bogus/3"), std::string::npos);
  EXPECT_EQ(parse_cidr_list("")->size(), 0u);
}

// The caller a request from `peer` with the user header `user` is, by the default options.
void expect_caller(const char* peer, const char* user, const char* key, const char* class_name,
                   bool named) {
  IdentityResolver r(options());
  const Identity id = r.resolve({peer, user, std::nullopt});
  EXPECT_EQ(id.key, key);
  EXPECT_EQ(id.class_name, class_name);
  EXPECT_EQ(id.named, named);
}

TEST(Identity, TrustedPeerNamesTheUser) {
  expect_caller("127.0.0.1", "Alice", "user:Alice", "user", true);
}

TEST(Identity, HeaderFromUntrustedPeerIsIgnored) {
  expect_caller("192.0.2.7", "Alice", "ip:192.0.2.7", "anonymous", false);
}

TEST(Identity, UnprintableOrEmptyUserIsAnonymous) {
  IdentityResolver r(options());
  EXPECT_EQ(r.resolve({"127.0.0.1", "bad\x01name", std::nullopt}).key, "ip:127.0.0.1");
  EXPECT_EQ(r.resolve({"127.0.0.1", "  ", std::nullopt}).key, "ip:127.0.0.1");
}

TEST(Identity, ForwardedForOnlyFromTrustedProxies) {
  IdentityResolver r(options());
  // From a trusted proxy: the right-most address that is not itself a trusted proxy.
  EXPECT_EQ(r.resolve({"10.0.0.5", std::nullopt, "203.0.113.9, 198.51.100.4, 10.0.0.9"}).key,
            "ip:198.51.100.4");
  // From anyone else, X-Forwarded-For is the client's own claim.
  EXPECT_EQ(r.resolve({"192.0.2.7", std::nullopt, "203.0.113.9"}).key, "ip:192.0.2.7");
  // Garbage in the header leaves the last good hop.
  EXPECT_EQ(r.resolve({"10.0.0.5", std::nullopt, "junk"}).key, "ip:10.0.0.5");
}

TEST(Identity, Ipv6CallersAreKeyedByTheirSlash64) {
  IdentityResolver r(options());
  EXPECT_EQ(r.resolve({"2001:db8:1:2:aaaa::1", std::nullopt, std::nullopt}).key,
            "ip:2001:db8:1:2::/64");
  EXPECT_EQ(r.resolve({"2001:db8:1:2:bbbb::9", std::nullopt, std::nullopt}).key,
            "ip:2001:db8:1:2::/64");
}

TEST(Identity, RulesPickClassesFirstMatchWins) {
  IdentityOptions o = options();
  o.rules.push_back({"bot", {"Bot:*", "Crawler"}, {}});
  o.rules.push_back({"internal", {}, *parse_cidr_list("10.0.0.0/8")});
  IdentityResolver r(o);
  EXPECT_EQ(r.resolve({"127.0.0.1", "Bot:Indexer", std::nullopt}).class_name, "bot");
  EXPECT_EQ(r.resolve({"127.0.0.1", "Crawler", std::nullopt}).class_name, "bot");
  EXPECT_EQ(r.resolve({"127.0.0.1", "Crawler2", std::nullopt}).class_name, "user");
  EXPECT_EQ(r.resolve({"10.3.3.3", std::nullopt, std::nullopt}).class_name, "internal");
  // A user rule never matches a name the header could not carry.
  EXPECT_EQ(r.resolve({"192.0.2.1", "Bot:Indexer", std::nullopt}).class_name, "anonymous");
}

}  // namespace
}  // namespace wf::limits
