#include "wf/limits/identity.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace wf::limits {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// User names are printable: no control characters, at most max_bytes.
bool acceptable_user(std::string_view name, std::size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes) return false;
  return std::none_of(name.begin(), name.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

bool matches_user(std::string_view pattern, std::string_view user) {
  if (!pattern.empty() && pattern.back() == '*') {
    return user.starts_with(pattern.substr(0, pattern.size() - 1));
  }
  return pattern == user;
}

// The address part of "1.2.3.4", "[::1]:80", "1.2.3.4:80" (X-Forwarded-For entries).
std::string_view strip_port(std::string_view s) {
  if (s.starts_with('[')) {
    const std::size_t end = s.find(']');
    return end == std::string_view::npos ? s : s.substr(1, end - 1);
  }
  if (std::count(s.begin(), s.end(), ':') == 1) return s.substr(0, s.find(':'));
  return s;
}

}  // namespace

std::optional<IpAddress> parse_ip(std::string_view text) {
  text = trim(text);
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  IpAddress ip;
  in_addr v4{};
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    ip.bytes[10] = 0xff;
    ip.bytes[11] = 0xff;
    std::memcpy(ip.bytes.data() + 12, &v4, 4);
    ip.v4 = true;
    return ip;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, buf, &v6) != 1) return std::nullopt;
  std::memcpy(ip.bytes.data(), &v6, 16);
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  ip.v4 = std::memcmp(ip.bytes.data(), kMapped, 12) == 0;
  return ip;
}

std::string to_string(const IpAddress& ip) {
  if (ip.v4) {
    // Dotted decimal by hand: every request names its caller, and inet_ntop's IPv4 text goes
    // through sprintf (~1.7 k instructions against ~100).
    char buf[16];
    char* p = buf;
    for (int i = 12; i < 16; ++i) {
      const unsigned b = ip.bytes[static_cast<std::size_t>(i)];
      if (i > 12) *p++ = '.';
      if (b >= 100) *p++ = static_cast<char>('0' + b / 100);
      if (b >= 10) *p++ = static_cast<char>('0' + b / 10 % 10);
      *p++ = static_cast<char>('0' + b % 10);
    }
    return std::string(buf, p);
  }
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, ip.bytes.data(), buf, sizeof buf);
  return buf;
}

std::expected<Cidr, std::string> parse_cidr(std::string_view text) {
  text = trim(text);
  const std::size_t slash = text.find('/');
  const auto ip = parse_ip(text.substr(0, slash));
  if (!ip) {
    return std::unexpected("'" + std::string(text) +
                           "' is not an address or CIDR: write e.g. 10.0.0.0/8 or ::1/128");
  }
  Cidr cidr{*ip, 128};
  if (slash != std::string_view::npos) {
    const std::string_view bits = text.substr(slash + 1);
    int n = -1;
    if (!bits.empty() && bits.size() <= 3 &&
        std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      n = std::stoi(std::string(bits));
    }
    const int max = ip->v4 ? 32 : 128;
    if (n < 0 || n > max) {
      return std::unexpected("'" + std::string(text) + "' has a prefix length outside 0.." +
                             std::to_string(max));
    }
    cidr.prefix = ip->v4 ? 96 + n : n;
  }
  return cidr;
}

std::expected<std::vector<Cidr>, std::string> parse_cidr_list(std::string_view text) {
  std::vector<Cidr> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find_first_of(", ", pos);
    if (end == std::string_view::npos) end = text.size();
    if (end > pos) {
      auto cidr = parse_cidr(text.substr(pos, end - pos));
      if (!cidr) return std::unexpected(cidr.error());
      out.push_back(*cidr);
    }
    pos = end + 1;
  }
  return out;
}

bool contains(const Cidr& cidr, const IpAddress& ip) {
  const int whole = cidr.prefix / 8;
  if (std::memcmp(cidr.base.bytes.data(), ip.bytes.data(), whole) != 0) return false;
  const int rest = cidr.prefix % 8;
  if (rest == 0) return true;
  const std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (cidr.base.bytes[whole] & mask) == (ip.bytes[whole] & mask);
}

bool contains(const std::vector<Cidr>& cidrs, const IpAddress& ip) {
  return std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) { return contains(c, ip); });
}

std::vector<Cidr> loopback() {
  return *parse_cidr_list("127.0.0.0/8,::1/128");
}

IdentityResolver::IdentityResolver(IdentityOptions options) : options_(std::move(options)) {
  std::transform(options_.user_header.begin(), options_.user_header.end(),
                 options_.user_header.begin(), [](unsigned char c) { return std::tolower(c); });
}

std::optional<IpAddress> IdentityResolver::client_address(
    const CallerInfo& caller, const std::optional<IpAddress>& peer) const {
  if (!peer || !caller.forwarded_for || !contains(options_.trusted_proxies, *peer)) return peer;
  // The right-most entry that is not a trusted proxy is the client; entries left of it could
  // have been written by the client itself.
  std::string_view list = *caller.forwarded_for;
  std::optional<IpAddress> client = peer;
  for (int hops = 0; hops < 32 && !list.empty(); ++hops) {
    const std::size_t comma = list.rfind(',');
    const std::string_view entry =
        strip_port(trim(comma == std::string_view::npos ? list : list.substr(comma + 1)));
    const auto ip = parse_ip(entry);
    if (!ip) break;
    client = ip;
    if (!contains(options_.trusted_proxies, *ip)) break;
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(0, comma);
  }
  return client;
}

std::string IdentityResolver::class_of(const std::optional<std::string>& user,
                                       const std::optional<IpAddress>& client) const {
  for (const ClassRule& rule : options_.rules) {
    if (user && std::any_of(rule.users.begin(), rule.users.end(),
                            [&](const std::string& p) { return matches_user(p, *user); })) {
      return rule.class_name;
    }
    if (client && (!user || !rule.unnamed_only) && contains(rule.peers, *client))
      return rule.class_name;
  }
  return user ? options_.user_class : options_.anonymous_class;
}

Identity IdentityResolver::resolve(const CallerInfo& caller) const {
  const auto peer = parse_ip(caller.peer);
  std::optional<std::string> user;
  if (peer && caller.user_header && contains(options_.trusted_user_peers, *peer)) {
    const std::string_view name = trim(*caller.user_header);
    if (acceptable_user(name, options_.max_user_bytes)) user = std::string(name);
  }
  const auto client = client_address(caller, peer);
  Identity id;
  id.class_name = class_of(user, client);
  id.address = client ? to_string(*client) : std::string(caller.peer);
  id.named = user.has_value();
  if (user) {
    id.key = "user:" + *user;
  } else if (client && !client->v4) {
    // One IPv6 host usually holds a whole /64: key anonymous callers by it.
    IpAddress net = *client;
    std::fill(net.bytes.begin() + 8, net.bytes.end(), 0);
    id.key = "ip:" + to_string(net) + "/64";
  } else {
    id.key = "ip:" + id.address;
  }
  return id;
}

}  // namespace wf::limits
