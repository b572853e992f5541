#pragma once
// Raw connections to a server under test on 127.0.0.1, for what HttpClient will not do: bytes
// written by hand, a request left half-sent, a connection held idle. Failures are test failures
// (gtest), never exceptions; reads are bounded by a 5 s receive timeout.

#include <cstdint>
#include <string>
#include <string_view>

namespace wf::http_test {

// A connected TCP socket to 127.0.0.1:`port`. When the connect fails the test fails and the
// result is -1, so that a test which cannot go on without it can ASSERT_GE(fd, 0).
int connect_loopback(std::uint16_t port);

// Writes `bytes` in one write(); a short or failed write fails the test.
void write_all(int fd, std::string_view bytes);

// Reads until the peer closes (or 5 s pass without a byte).
std::string read_to_eof(int fd);

// Reads until `needle` has arrived, the peer closes, or 5 s pass without a byte.
std::string read_until(int fd, std::string_view needle);

}  // namespace wf::http_test
