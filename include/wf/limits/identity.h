#pragma once
// Who is calling. The user comes from a trusted header (default X-Wikifunctions-User, set by the
// wiki) and is believed only when the connection comes from a trusted peer (CIDRs; default
// loopback, where a local TLS proxy or the wiki's sidecar connects from). Otherwise the caller is
// its client address: the peer, or the last untrusted hop of X-Forwarded-For when the peer is a
// trusted proxy. Each identity falls into a class (first matching rule; else "user" for a named
// user, "anonymous" for an address), and each class has its own limits (limiter.h).

#include <array>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wf::limits {

// An IPv4 or IPv6 address; IPv4 is stored as IPv4-mapped IPv6 (::ffff:a.b.c.d).
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool v4 = false;
};
std::optional<IpAddress> parse_ip(std::string_view text);
std::string to_string(const IpAddress& ip);

struct Cidr {
  IpAddress base;
  int prefix = 0;  // in bits of the 128-bit (mapped) form
};
// "10.0.0.0/8", "::1/128", "127.0.0.1" (a single address). The error names the bad entry.
std::expected<Cidr, std::string> parse_cidr(std::string_view text);
// Comma- or space-separated list; empty text is an empty list.
std::expected<std::vector<Cidr>, std::string> parse_cidr_list(std::string_view text);
bool contains(const Cidr& cidr, const IpAddress& ip);
bool contains(const std::vector<Cidr>& cidrs, const IpAddress& ip);

// Puts callers into a class. `users` are user names, exact or a prefix ending in '*'
// ("Bot:*"); they match only users named by the trusted header. `peers` match the client address
// (of any caller, or with unnamed_only of callers no trusted header named).
struct ClassRule {
  std::string class_name;
  std::vector<std::string> users;
  std::vector<Cidr> peers;
  bool unnamed_only = false;
};

struct IdentityOptions {
  std::string user_header = "x-wikifunctions-user";  // compared case-insensitively
  std::vector<Cidr> trusted_user_peers;              // the header is believed from these
  std::vector<Cidr> trusted_proxies;                 // X-Forwarded-For is believed from these
  std::vector<ClassRule> rules;                      // first match wins
  std::string user_class = "user";                   // named users no rule matched
  std::string anonymous_class = "anonymous";         // addresses no rule matched
  std::size_t max_user_bytes = 255;                  // longer names are not believed
};

// Loopback (127.0.0.0/8 and ::1).
std::vector<Cidr> loopback();

// What the HTTP layer knows about a request, without depending on it.
struct CallerInfo {
  std::string_view peer;  // the connection's remote address
  std::optional<std::string_view> user_header;
  std::optional<std::string_view> forwarded_for;
};

struct Identity {
  std::string key;         // "user:<name>" or "ip:<address>" (IPv6: its /64)
  std::string class_name;  // the class whose limits apply
  bool named = false;      // the user came from the trusted header
  std::string address;     // the effective client address (for logs)
};

class IdentityResolver {
 public:
  explicit IdentityResolver(IdentityOptions options);
  Identity resolve(const CallerInfo& caller) const;
  const IdentityOptions& options() const { return options_; }

 private:
  std::optional<IpAddress> client_address(const CallerInfo& caller,
                                          const std::optional<IpAddress>& peer) const;
  std::string class_of(const std::optional<std::string>& user,
                       const std::optional<IpAddress>& client) const;
  IdentityOptions options_;
};

}  // namespace wf::limits
